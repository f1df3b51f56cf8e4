# The two commands of the README. Both create .venv on first use (torch==2.13.0 first,
# then the package with its dev extras) and are cheap to re-run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup clean

$(BIN)/aigi: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/aigi

setup: $(BIN)/aigi

demo: setup
	$(BIN)/aigi demo

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build src/*.egg-info
