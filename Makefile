# Two set-up commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= How does Python's json module decode JSON documents?

.PHONY: demo test test-fast lint install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed  ## run the research scenario offline, no API key needed
	$(BIN)/ensemble run research "$(QUESTION)" --yes

test: $(BIN)/.installed  ## the whole suite: unit, CLI end-to-end, notebooks, dev server
	$(BIN)/pytest

test-fast: $(BIN)/.installed  ## unit tests only
	$(BIN)/pytest tests/unit

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
