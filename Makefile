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

# Values reach dbtasks through the environment, never through shell text, and
# stay literal (no make expansion either): a message with quotes, ;, $(...) or
# backticks is passed exactly as typed.
override MIGRATE_MSG := $(value MIGRATE_MSG)
override CHANGE := $(value CHANGE)
override STEPS := $(value STEPS)
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

install: ## Create .venv and install dbtasks with its tools (just, black, squawk, ...); again when pyproject.toml changes
	@test $(VENV)/.installed -nt pyproject.toml || ($(PYTHON) -m venv $(VENV) && $(VENV)/bin/pip install --quiet --upgrade pip && $(VENV)/bin/pip install --quiet -e '.[test]' && touch $(VENV)/.installed)

init: install ## Set up: venv, start the database, migrate to head, demo data, status
	$(DBTASKS) init

test: install ## Run the test suite (starts its own throwaway PostgreSQL)
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
	MIGRATE_MSG="$${CHANGE:-$$MIGRATE_MSG}" $(DBTASKS) revision --autogenerate

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

# -- data: dump, restore, backup, backfill scripts, cleanup --------------------
# FILE, FROM, MODE, JOBS, KEEP, SCRIPT, DRY_RUN, OLDER_THAN and APPLY reach
# dbtasks as environment variables (read by its options), never as shell text.
override FILE := $(value FILE)
override FROM := $(value FROM)
override MODE := $(value MODE)
override JOBS := $(value JOBS)
override KEEP := $(value KEEP)
override SCRIPT := $(value SCRIPT)
override DRY_RUN := $(value DRY_RUN)
override OLDER_THAN := $(value OLDER_THAN)
override APPLY := $(value APPLY)
export FILE FROM MODE JOBS KEEP SCRIPT DRY_RUN OLDER_THAN APPLY

.PHONY: dump-db restore-db dump-and-restore backup-db run-script db-cleanup

dump-db: ## Dump the database (ENV=prod for an environment) to dumps/, or FILE=path
	$(DBTASKS) dump-db

restore-db: ## Restore FILE=path into the database; swapped in only if it fully succeeded
	$(DBTASKS) restore-db

dump-and-restore: ## Copy FROM=prod into the local database safely (MODE=full for a plain restore)
	$(DBTASKS) dump-and-restore

backup-db: ## Timestamped, verified backup into backups/, keeping the newest KEEP
	$(DBTASKS) backup-db

run-script: ## Run a backfill: SCRIPT=scripts/backfills/x.py [ENV=prod] [DRY_RUN=1]
	$(DBTASKS) run-script

db-cleanup: ## Delete rows past the retention policies: OLDER_THAN="1 year", dry run unless APPLY=1
	$(DBTASKS) cleanup

# -- schema docs: diagram.mmd, schema.sql, diagram.svg -------------------------
# FROM_DATABASE=1 draws the configured database (e.g. with ENV=prod) instead of
# a scratch database migrated to head; it reaches dbtasks as an environment variable.
override FROM_DATABASE := $(value FROM_DATABASE)
export FROM_DATABASE

.PHONY: regenerate-db-diagram check-db-docs

regenerate-db-diagram: ## Write docs/database/diagram.mmd, schema.sql (+ diagram.svg) from the migrations at head
	$(DBTASKS) regenerate-db-diagram

check-db-docs: ## Fail with a diff when docs/database/diagram.mmd, schema.sql or diagram.svg are stale
	$(DBTASKS) check-db-docs

# -- migration guardrails: drift, heads, lint, roundtrip, rehearse, check -----
# SINCE=REF (git base of lint and rehearse), ALL=1 (every revision) and
# FORMAT=json reach dbtasks as environment variables, never as shell text.
ifdef SINCE
export DBTASKS_LINT_SINCE := $(value SINCE)
endif
ifdef ALL
export DBTASKS_ALL := $(value ALL)
endif
ifdef FORMAT
export DBTASKS_FORMAT := $(value FORMAT)
endif

.PHONY: check db-check-migrations db-check-heads db-migrate-linearize db-lint-migrations \
	db-check-roundtrip db-rehearse

check: ## Every migration guardrail, one summary table: heads, lint, roundtrip, drift, rehearse, docs
	$(DBTASKS) check

db-check-migrations: ## Fail when the models differ from the migrations (scratch database, autogenerate)
	$(DBTASKS) check-migrations

db-check-heads: ## Fail when the history has more than one head
	$(DBTASKS) check-heads

db-migrate-linearize: ## Rebase the newer branch onto the other head: one straight history
	$(DBTASKS) linearize

db-lint-migrations: ## Lint new revisions (SINCE=REF, ALL=1, FORMAT=json): imports, structure, squawk
	$(DBTASKS) lint

db-check-roundtrip: ## Prove every downgrade undoes its upgrade, revision by revision
	$(DBTASKS) check-roundtrip

db-rehearse: ## Apply the new revisions (SINCE=REF) to a scratch database full of generated rows
	$(DBTASKS) rehearse
