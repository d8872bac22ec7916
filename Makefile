# Developer entry points. The README's two commands are `make run` and `make test`.
#
#   make run                     migrate, load the demo data, serve (SQLite under var/)
#   make run BIND=0.0.0.0:8000   same, on another address
#   make test                    lint, then pytest on SQLite, and on PostgreSQL too (side by
#                                side) when AUTHZ_TEST_POSTGRES_URL is set in the environment;
#                                then the policy tests and the Python client's tests
#   make lint                    ruff check, ruff format --check, mypy (make test runs it)
#   make test ARGS="-k login -x" extra pytest arguments (given to both runs)
#   make clean                   remove var/ and caches (keeps .venv)

PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed
BIND   ?=
WORKERS ?=
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help venv run lint test clean

help:
	@echo "make venv    create .venv and install the project with its test extras"
	@echo "make run     migrate, load demo data and serve   (BIND=host:port WORKERS=n)"
	@echo "make test    lint, pytest on SQLite, then PostgreSQL if AUTHZ_TEST_POSTGRES_URL is set (ARGS=...)"
	@echo "make lint    ruff check, ruff format --check and mypy (settings in pyproject.toml)"
	@echo "make clean   remove var/ and caches (keeps .venv)"

# --- virtual environment ----------------------------------------------------
# The venv is made once; the project is (re)installed only when pyproject.toml
# is newer than the stamp, so repeated runs cost nothing.
venv: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The Python client (clients/python) is installed too: the service's suite runs
# it against a live service (tests/test_python_client.py).
$(STAMP): pyproject.toml clients/python/pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --disable-pip-version-check -e ".[test]" -e clients/python
	@touch $@

# --- run the service --------------------------------------------------------
run: venv
	$(VENV)/bin/authz db upgrade
	$(VENV)/bin/authz demo
	$(if $(BIND),AUTHZ_PUBLIC_BASE_URL=$${AUTHZ_PUBLIC_BASE_URL:-http://$(BIND)}) \
	  exec $(VENV)/bin/authz serve$(if $(BIND), --bind $(BIND))$(if $(WORKERS), --workers $(WORKERS))

# --- lint -------------------------------------------------------------------
# The linter, the formatter's check and the type checker, at the versions pinned
# in the test extras; settings in pyproject.toml, the choices in docs/decisions.md
# ("Linting and types"). `make test` runs it first.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# --- tests ------------------------------------------------------------------
# Lint, then the same suite on each backend (scripts/test-passes.sh: side by side
# when PostgreSQL is configured and the machine has two cores). Every step runs
# even if one before it failed, so one run shows every failure; the target fails
# if any step failed.
test: venv
	@lint_rc=0; passes_rc=0; \
	echo "==> lint (ruff check, ruff format --check, mypy)"; \
	$(MAKE) --no-print-directory lint || lint_rc=$$?; \
	PYTEST=$(VENV)/bin/pytest scripts/test-passes.sh $(ARGS) || passes_rc=$$?; \
	echo "==> lint: exit $$lint_rc, pytest passes: exit $$passes_rc"; \
	[ $$lint_rc -eq 0 ] && [ $$passes_rc -eq 0 ]
	$(VENV)/bin/authz policy test
	@echo "==> the Python client's own tests (clients/python/tests)"
	cd clients/python && ../../$(VENV)/bin/pytest -q

# --- housekeeping -----------------------------------------------------------
clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache build
	find . -path ./$(VENV) -prune -o -path ./.git -prune -o \
	  -type d -name __pycache__ -prune -exec rm -rf {} +

# --- benchmark --------------------------------------------------------------
# The decision benchmark at 1,000,000 grants, one table (docs/performance.md).
# The world is generated once and cached under var/bench/. ARGS=... extra options
# of bench.run, e.g. ARGS="--size quick" for a smoke test.
.PHONY: bench
bench: venv
	$(VENV)/bin/python -m bench.run --size full $(ARGS)
