# Database chores as Make targets. Every target is one line calling one
# `dbtasks` verb; `make help` lists them. The justfile offers the same recipes.
#
#   make init                               set everything up and migrate
#   make db-migrate-create MIGRATE_MSG="add user email"
#   make db-migrate ENV=staging CONFIRM=staging_db

.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
DBTASKS ?= $(VENV)/bin/dbtasks
PYTEST_ARGS ?=

# Values reach dbtasks through the environment, never through shell text, so a
# message with quotes, ;, $(...) or backticks is passed as it is.
export MIGRATE_MSG CHANGE STEPS
ifdef ENV
export DBTASKS_ENV := $(ENV)
endif
ifdef CONFIRM
export DBTASKS_CONFIRM := $(CONFIRM)
endif

.PHONY: help install init test db-seed start-db stop-db init-db volume-recreate \
	db-shell db-status db-migrate upgrade-db upgrade-prod-db db-migrate-down \
	db-migrate-down-all db-migrate-create migrate-db revision db-migrate-empty \
	db-migrate-current db-migrate-history db-migrate-heads db-migrate-merge-heads

help: ## List the recipes
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-24s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed ## Create .venv and install dbtasks with its tools (just, black, squawk, ...)

init: $(VENV)/.installed ## Set up: venv, start the database, migrate to head, demo data, status
	$(DBTASKS) init

test: $(VENV)/.installed ## Run the test suite (starts its own throwaway PostgreSQL)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

db-seed: ## Load the example application's demo data (idempotent)
	$(DBTASKS) seed

start-db: ## Start the database server (idempotent)
	$(DBTASKS) start-db

stop-db: ## Stop the database server
	$(DBTASKS) stop-db

init-db: ## Start the database server and migrate to head
	$(DBTASKS) init-db

volume-recreate: ## Destroy the database's data, start afresh, migrate (protected)
	$(DBTASKS) volume-recreate

db-shell: ## Open psql on the database (reads stdin when it is not a terminal)
	$(DBTASKS) shell

db-status: ## Current revision, head(s), pending revisions oldest first
	$(DBTASKS) status

db-migrate: ## Upgrade the database to head
	$(DBTASKS) upgrade

upgrade-db: ## Alias of db-migrate
	$(DBTASKS) upgrade

upgrade-prod-db: ## Upgrade the prod environment (PROD_DATABASE_URL) to head, after confirmation
	DBTASKS_ENV=prod $(DBTASKS) upgrade

db-migrate-down: ## Undo the last STEPS revisions (default 1)
	$(DBTASKS) downgrade

db-migrate-down-all: ## Undo every revision down to base (protected)
	$(DBTASKS) down-all

db-migrate-create: ## Autogenerate a formatted revision: MIGRATE_MSG="add x"
	$(DBTASKS) revision --autogenerate

migrate-db: ## Alias of db-migrate-create: CHANGE="add x"
	MIGRATE_MSG="$${CHANGE-$$MIGRATE_MSG}" $(DBTASKS) revision --autogenerate

revision: ## Alias of db-migrate-create: MIGRATE_MSG="add x"
	$(DBTASKS) revision --autogenerate

db-migrate-empty: ## Write an empty revision for a hand-written migration: MIGRATE_MSG="..."
	$(DBTASKS) revision --empty

db-migrate-current: ## The revision(s) the database is at
	$(DBTASKS) current

db-migrate-history: ## Every revision, oldest first, applied ones marked
	$(DBTASKS) history

db-migrate-heads: ## The head revisions (more than one must be merged)
	$(DBTASKS) heads

db-migrate-merge-heads: ## Write a merge revision joining all heads
	$(DBTASKS) merge-heads
