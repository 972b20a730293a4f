# Two commands do all set-up on a fresh machine with Python 3.11 and make: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint types contracts pytest bench clean

# Reinstall when the declared or pinned dependencies change.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/spaces run

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

contracts: $(STAMP)
	$(BIN)/lint-imports

# The suite runs against SQLite and PostgreSQL; scripts/with-postgres finds or starts a server (see README);
# scripts/with-chromium installs Debian's chromium for the browser tests when it is missing.
# pytest runs on PYTEST_WORKERS pytest-xdist processes: most of the suite waits on real time (paced sends,
# spawned processes, browsers), so 3 workers on 2 cores take about half the serial time. Whole files are the
# units, and the multi-process tests never run beside the wall-clock ones: tests/parallel.py.
# Serially: `make test PYTEST_WORKERS=0` (or PYTEST_ARGS="-n 0"); PYTEST_ARGS adds to the command line.
PYTEST_WORKERS ?= 3
pytest: $(STAMP)
	scripts/with-postgres scripts/with-chromium \
	  $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test: lint types contracts pytest

bench: $(STAMP)
	scripts/with-postgres $(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
