# The two commands of the README. Both create .venv on first use with every version taken
# from requirements/lock.txt (pip constraints): torch==2.13.0 and the build backend first, then
# the package with its dev extras, built with that pinned backend (no build isolation, which
# would fetch the newest setuptools). Cheap to re-run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test setup browser lock test-latest clean

$(BIN)/aigi: pyproject.toml requirements/lock.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -c requirements/lock.txt $(TORCH) setuptools wheel
	$(BIN)/pip install --quiet -c requirements/lock.txt --no-build-isolation -e ".[dev]"
	touch $(BIN)/aigi

setup: $(BIN)/aigi

demo: setup
	$(BIN)/aigi demo

test: setup browser
	$(BIN)/python -m pytest -q

# Refresh the lock: a fresh venv with the newest versions pyproject.toml allows, frozen.
# Run `make test` afterwards and commit requirements/lock.txt together with any fixes.
lock:
	rm -rf .venv-lock
	$(PY) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade $(TORCH) setuptools wheel
	.venv-lock/bin/pip install --quiet --no-build-isolation -e ".[dev]"
	{ sed -n '/^#/p' requirements/lock.txt; .venv-lock/bin/pip list --format=freeze --exclude-editable \
		| grep -v -i -E '^pip==' | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'; } > requirements/lock.txt.new
	mv requirements/lock.txt.new requirements/lock.txt
	rm -rf .venv-lock
	@echo "wrote requirements/lock.txt; now run: make clean test"

# The suite against the newest versions (no lock), in its own venv: drift seen on purpose.
test-latest: browser
	rm -rf .venv-latest
	$(PY) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet $(TORCH)
	.venv-latest/bin/pip install --quiet --upgrade -e ".[dev]"
	.venv-latest/bin/pip list --format=freeze --exclude-editable
	.venv-latest/bin/python -m pytest -q

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
	rm -rf $(VENV) .venv-lock .venv-latest runs build src/*.egg-info
