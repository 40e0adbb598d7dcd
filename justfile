# Database chores as just recipes: the same recipes as the Makefile, same meaning.
#
#   just init
#   just db-migrate-create "add user email"
#   just ENV=staging CONFIRM=staging_db db-migrate

set positional-arguments := false

python := env_var_or_default("PYTHON", "python3")
venv := env_var_or_default("VENV", ".venv")
dbtasks := env_var_or_default("DBTASKS", venv / "bin/dbtasks")
pytest_args := env_var_or_default("PYTEST_ARGS", "")

# Values reach dbtasks through the environment, never through shell text.
ENV := env_var_or_default("ENV", "")
CONFIRM := env_var_or_default("CONFIRM", "")
export DBTASKS_ENV := ENV
export DBTASKS_CONFIRM := CONFIRM

# List the recipes
help:
    @{{just_executable()}} --list --unsorted --justfile {{justfile()}}

# Create .venv and install dbtasks with its tools (just, black, squawk, ...); again when pyproject.toml changes
install:
    @test {{venv}}/.installed -nt pyproject.toml || ({{python}} -m venv {{venv}} && {{venv}}/bin/pip install --quiet --upgrade pip && {{venv}}/bin/pip install --quiet -e '.[test]' && touch {{venv}}/.installed)

# Set up: venv, start the database, migrate to head, demo data, status
init: install
    {{dbtasks}} init

# Run the test suite (starts its own throwaway PostgreSQL)
test: install
    {{venv}}/bin/pytest {{pytest_args}}

# Load the example application's demo data (idempotent)
db-seed:
    {{dbtasks}} seed

# Start the database server (idempotent)
start-db:
    {{dbtasks}} start-db

# Stop the database server
stop-db:
    {{dbtasks}} stop-db

# Start the database server and migrate to head
init-db:
    {{dbtasks}} init-db

# Destroy the database's data, start afresh, migrate (protected)
volume-recreate:
    {{dbtasks}} volume-recreate

# Open psql on the database (reads stdin when it is not a terminal)
db-shell:
    {{dbtasks}} shell

# Current revision, head(s), pending revisions oldest first
db-status:
    {{dbtasks}} status

# Upgrade the database to head
db-migrate:
    {{dbtasks}} upgrade

# Alias of db-migrate
upgrade-db:
    {{dbtasks}} upgrade

# Upgrade the prod environment (PROD_DATABASE_URL) to head, after confirmation
upgrade-prod-db:
    DBTASKS_ENV=prod {{dbtasks}} upgrade

# Undo the last STEPS revisions (default 1)
db-migrate-down $STEPS="1":
    {{dbtasks}} downgrade

# Undo every revision down to base (protected)
db-migrate-down-all:
    {{dbtasks}} down-all

# Autogenerate a formatted revision: just db-migrate-create "add x"
db-migrate-create $MIGRATE_MSG="":
    {{dbtasks}} revision --autogenerate

# Alias of db-migrate-create: just migrate-db "add x"
migrate-db $MIGRATE_MSG="":
    {{dbtasks}} revision --autogenerate

# Alias of db-migrate-create: just revision "add x"
revision $MIGRATE_MSG="":
    {{dbtasks}} revision --autogenerate

# Write an empty revision for a hand-written migration: just db-migrate-empty "..."
db-migrate-empty $MIGRATE_MSG="":
    {{dbtasks}} revision --empty

# The revision(s) the database is at
db-migrate-current:
    {{dbtasks}} current

# Every revision, oldest first, applied ones marked
db-migrate-history:
    {{dbtasks}} history

# The head revisions (more than one must be merged)
db-migrate-heads:
    {{dbtasks}} heads

# Write a merge revision joining all heads
db-migrate-merge-heads:
    {{dbtasks}} merge-heads

# Dump the database (ENV=prod for an environment) to dumps/, or FILE=path
dump-db $FILE=env_var_or_default("FILE", ""):
    {{dbtasks}} dump-db

# Restore a dump into the database; swapped in only if it fully succeeded: just restore-db path
restore-db $FILE=env_var_or_default("FILE", ""):
    {{dbtasks}} restore-db

# Copy an environment into the local database safely: just dump-and-restore prod [full]
dump-and-restore $FROM=env_var_or_default("FROM", "") $MODE=env_var_or_default("MODE", ""):
    {{dbtasks}} dump-and-restore

# Timestamped, verified backup into backups/, keeping the newest KEEP
backup-db $KEEP=env_var_or_default("KEEP", ""):
    {{dbtasks}} backup-db

# Run a backfill: just run-script scripts/backfills/x.py [1 for a dry run]
run-script $SCRIPT=env_var_or_default("SCRIPT", "") $DRY_RUN=env_var_or_default("DRY_RUN", ""):
    {{dbtasks}} run-script

# Delete rows past the retention policies: just db-cleanup "1 year" [1 to apply]
db-cleanup $OLDER_THAN=env_var_or_default("OLDER_THAN", "") $APPLY=env_var_or_default("APPLY", ""):
    {{dbtasks}} cleanup

# FROM_DATABASE=1 (just FROM_DATABASE=1 regenerate-db-diagram) draws the
# configured database instead of the migrations at head; read by dbtasks from
# the environment.
export FROM_DATABASE := env_var_or_default("FROM_DATABASE", "")

# Write docs/database/diagram.mmd, schema.sql (+ diagram.svg) from the migrations at head
regenerate-db-diagram:
    {{dbtasks}} regenerate-db-diagram

# Fail with a diff when docs/database/diagram.mmd, schema.sql or diagram.svg are stale
check-db-docs:
    {{dbtasks}} check-db-docs

# Every migration guardrail, one summary table: heads, lint, roundtrip, drift, rehearse, docs
check $DBTASKS_LINT_SINCE=env_var_or_default("SINCE", "") $DBTASKS_ALL=env_var_or_default("ALL", "") $DBTASKS_FORMAT=env_var_or_default("FORMAT", ""):
    {{dbtasks}} check

# Fail when the models differ from the migrations (scratch database, autogenerate)
db-check-migrations $DBTASKS_FORMAT=env_var_or_default("FORMAT", ""):
    {{dbtasks}} check-migrations

# Fail when the history has more than one head
db-check-heads:
    {{dbtasks}} check-heads

# Rebase the newer branch onto the other head: one straight history
db-migrate-linearize:
    {{dbtasks}} linearize

# Lint new revisions: just db-lint-migrations [REF] [1 for all] [json]
db-lint-migrations $DBTASKS_LINT_SINCE=env_var_or_default("SINCE", "") $DBTASKS_ALL=env_var_or_default("ALL", "") $DBTASKS_FORMAT=env_var_or_default("FORMAT", ""):
    {{dbtasks}} lint

# Prove every downgrade undoes its upgrade, revision by revision
db-check-roundtrip $DBTASKS_FORMAT=env_var_or_default("FORMAT", ""):
    {{dbtasks}} check-roundtrip

# Apply the new revisions to a scratch database full of generated rows: just db-rehearse [REF] [1 for all]
db-rehearse $DBTASKS_LINT_SINCE=env_var_or_default("SINCE", "") $DBTASKS_ALL=env_var_or_default("ALL", ""):
    {{dbtasks}} rehearse
