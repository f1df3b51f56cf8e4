# The two commands of the README. Both create .venv on first use (torch==2.13.0 first,
# then the package with its dev extras) and are cheap to re-run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup browser clean

$(BIN)/aigi: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/aigi

setup: $(BIN)/aigi

demo: setup
	$(BIN)/aigi demo

test: setup browser
	$(BIN)/python -m pytest -q

# The web page's test drives Debian's Chromium through Playwright (which never downloads a
# browser here). Install it when it is missing and we may (root, apt-get); otherwise that
# one test skips and says why.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium for the browser test"; \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) \
			|| echo "warning: could not install chromium; the browser test will be skipped"; \
	fi

clean:
	rm -rf $(VENV) runs build src/*.egg-info
