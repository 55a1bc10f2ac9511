PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: install run lint test demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack

demo: $(STAMP)
	HERALD_DEV_MODE=$${HERALD_DEV_MODE:-true} $(BIN)/python -m devstack.demo

# Format check, lint, then types (settings in pyproject.toml): the first step of make test.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# In parallel (pytest-xdist): each process has Temporal servers of its own. PYTEST_ARGS=-n0 runs
# it in one process; PYTEST_ARGS=tests/api picks a folder. Bytecode is written even where
# PYTHONDONTWRITEBYTECODE is set: the suite starts some fifty Python processes (workers, APIs,
# stacks), and each xdist process assertion-rewrites hypothesis and schemathesis otherwise.
PYTEST_WORKERS ?= 4
test: lint $(CHROMIUM)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The dashboard test drives Debian's Chromium (through the playwright package, never a browser
# of its own): installed once with apt-get, skipped when it is there.
$(CHROMIUM):
	@echo "make: installing Debian's chromium for the dashboard test (apt-get)"
	@{ $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends chromium >/dev/null; } \
	  && test -x $(CHROMIUM) \
	  || { echo >&2 "make: could not install Debian's chromium ($(CHROMIUM)), which the dashboard test needs:"; \
	       echo >&2 "      run 'apt-get install chromium' as root, then make test again."; exit 1; }

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .data
