# The two commands of the README. Both create .venv on first use (torch==2.13.0 first,
# then the package with its dev extras), with every version taken from requirements/lock.txt,
# and are cheap to re-run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
TORCH := torch==2.13.0

.PHONY: demo test setup browser lock test-latest clean

$(BIN)/aigi: pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet -c $(LOCK) $(TORCH)
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[dev]"
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
	.venv-lock/bin/pip install --quiet $(TORCH)
	.venv-lock/bin/pip install --quiet -e ".[dev]"
	{ sed -n '/^#/p' $(LOCK); .venv-lock/bin/pip list --format=freeze --exclude-editable \
		| grep -v -i -E '^(pip|setuptools|wheel)==' | sed -E 's/^torch==([0-9.]+)\+.*/torch==\1/'; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .venv-lock
	@echo "wrote $(LOCK); now run: make clean test"

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
