# The kit's own Makefile: its setup recipes (install, test, dist) and the
# database recipes every project gets, included from the file dbtasks ships
# (dbtasks/share/dbtasks.mk; `dbtasks adopt` copies it into other projects).
# `make help` lists them all; the justfile offers the same recipes.
#
#   make init                               set everything up and migrate
#   make db-migrate-create MIGRATE_MSG="add user email"
#   make db-migrate ENV=staging CONFIRM=staging_db

.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
DBTASKS ?= $(VENV)/bin/dbtasks
PYTEST_ARGS ?= -n 2

# Relative to this Makefile, so `make -f path/to/Makefile` works from anywhere.
include $(dir $(lastword $(MAKEFILE_LIST)))dbtasks/share/dbtasks.mk

.PHONY: install test dist

install: ## Create .venv and install dbtasks with its tools (just, black, squawk, ...); again when pyproject.toml changes
	@test $(VENV)/.installed -nt pyproject.toml || ($(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet --upgrade pip && $(VENV)/bin/pip install --quiet -e '.[all,test]' && touch $(VENV)/.installed)

# The database recipes of the kit itself run from its .venv.
init: install

test: install ## Run the test suite in parallel (starts its own throwaway PostgreSQL)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

dist: install ## Build a wheel and an sdist of dbtasks into dist/ (pipx install dist/dbtasks-*.whl)
	$(VENV)/bin/python -m build --no-isolation --outdir dist .
