"""The bad-input table: one row per way a user can get a command wrong.

Every row runs one command through make, just or the CLI against a shared
project copy and a shared database, and proves the same five things: the exit
code, exactly one line on stderr from dbtasks (make's and just's own trailer
lines aside) holding the expected words, no traceback, never the
``unexpected <Exception>`` catch-all, and nothing changed: the database
(catalog, row counts, alembic_version) and the project's files are as before.

Rows cannot change anything when they pass, so one project and one database
serve them all (per xdist worker); the rows run in parallel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import stat
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks.database import create_database, drop_database, make_engine, scratch_name

from .conftest import REPO, assert_one_line_error, copy_project, run, run_just, run_make, url_str

HEAD = "f689c66d672f"


@dataclasses.dataclass(frozen=True)
class Row:
    id: str
    runner: str  # "make", "just" or "cli"
    args: tuple[str, ...]  # recipe and make assignments / just arguments / CLI arguments
    words: tuple[str, ...]
    code: int = 2
    env: tuple[tuple[str, str], ...] = ()
    project: str = "main"  # which shared project copy: main, badenv, badrev, sqlname, textcol, badreadme
    database: str = "good"  # good: DATABASE_URL names the shared database; weak: the same as a role without CREATEDB; none: no DATABASE_URL; closed: a closed port
    # missing: a database that does not exist on the test server; weakmissing: the same for the role without CREATEDB;
    # foreign: local mode (no DATABASE_URL) on the test server's port, a server that is not this project's cluster


def r(id, runner, args, *words, code=2, env=(), project="main", database="good"):
    return Row(id, runner, tuple(args.split()) if isinstance(args, str) else tuple(args), words, code, tuple(env.items()) if isinstance(env, dict) else env, project, database)


CLOSED = "cannot connect"
NOENV = ("environment 'nosuch' is not configured", "NOSUCH_DATABASE_URL")

ROWS = [
    # -- the database does not answer: every verb that needs it says so, and how to fix it
    # (confirmed, so the protection of a server that is not the project's own lets the row reach the connection)
    *[r(f"closed-{runner}-{name}", runner, args, CLOSED, database="closed", env={"DBTASKS_CONFIRM": "app", "CONFIRM": "app", "PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod"}) for runner, name, args in [
        ("cli", "status", "status"), ("make", "status", "db-status"), ("just", "status", "db-status"),
        ("cli", "upgrade", "upgrade"), ("make", "upgrade", "db-migrate"), ("just", "upgrade", "upgrade-db"),
        ("cli", "downgrade", "downgrade"), ("make", "downgrade", "db-migrate-down"), ("just", "downgrade", "db-migrate-down"),
        ("cli", "down-all", "down-all"), ("make", "down-all", "db-migrate-down-all"),
        ("cli", "current", "current"), ("make", "current", "db-migrate-current"), ("just", "current", "db-migrate-current"),
        ("cli", "seed", "seed"), ("make", "seed", "db-seed"), ("just", "seed", "db-seed"),
        ("cli", "dump-db", "dump-db"), ("make", "dump-db", "dump-db"), ("just", "dump-db", "dump-db"),
        ("cli", "backup-db", "backup-db"), ("make", "backup-db", "backup-db"),
        ("cli", "revision", "revision -m x"), ("make", "revision", "db-migrate-create MIGRATE_MSG=x"),
        ("cli", "init-db", "init-db"), ("make", "init-db", "init-db"),
        ("cli", "create-db", "create-db"), ("make", "create-db", "create-db"),
        ("cli", "from-database", "regenerate-db-diagram --from-database"),
        ("cli", "run-script", "run-script scripts/backfills/ok.py"),
    ]],
    # -- an environment that is not configured
    *[r(f"noenv-{runner}-{name}", runner, args, *NOENV, env=env) for runner, name, args, env in [
        ("cli", "status", "--env nosuch status", {}), ("make", "status", "db-status", {"ENV": "nosuch"}), ("just", "status", "db-status", {"ENV": "nosuch"}),
        ("cli", "upgrade", "--env nosuch upgrade", {}), ("make", "upgrade", "db-migrate", {"ENV": "nosuch"}),
        ("cli", "downgrade", "--env nosuch downgrade", {}), ("just", "downgrade", "db-migrate-down", {"ENV": "nosuch"}),
        ("cli", "dump-db", "--env nosuch dump-db", {}), ("make", "dump-db", "dump-db", {"ENV": "nosuch"}),
        ("cli", "url", "--env nosuch url", {}), ("cli", "settings", "--env nosuch settings", {}),
        ("cli", "check", "--env nosuch check", {}), ("make", "check", "check", {"ENV": "nosuch"}),
        ("cli", "lint", "--env nosuch lint", {}), ("make", "lint", "db-lint-migrations", {"ENV": "nosuch"}),
        ("cli", "check-heads", "--env nosuch check-heads", {}), ("just", "check-heads", "db-check-heads", {"ENV": "nosuch"}),
        ("cli", "check-migrations", "--env nosuch check-migrations", {}), ("make", "check-migrations", "db-check-migrations", {"ENV": "nosuch"}),
        ("cli", "check-roundtrip", "--env nosuch check-roundtrip", {}), ("cli", "rehearse", "--env nosuch rehearse", {}),
        ("cli", "check-db-docs", "--env nosuch check-db-docs", {}), ("make", "diagram", "regenerate-db-diagram", {"ENV": "nosuch"}),
        ("cli", "history", "--env nosuch history", {}), ("cli", "heads", "--env nosuch heads", {}),
        ("cli", "merge-heads", "--env nosuch merge-heads", {}), ("cli", "linearize", "--env nosuch linearize", {}),
        ("cli", "restore-db", "--env nosuch restore-db -f x.dump", {}), ("cli", "dump-and-restore", "--env nosuch dump-and-restore --from prod", {}),
        ("cli", "volume-recreate", "--env nosuch volume-recreate", {}), ("cli", "start-db", "--env nosuch start-db", {}),
        ("cli", "stop-db", "--env nosuch stop-db", {}), ("cli", "init", "--env nosuch init", {}),
        ("cli", "protect", "--env nosuch protect", {}), ("make", "unprotect", "db-unprotect", {"ENV": "nosuch"}),
    ]],
    # -- settings with values that cannot be right
    r("url-mysql-cli", "cli", "status", "must point at PostgreSQL", env={"DATABASE_URL": "mysql://u@h/db"}, database="none"),
    r("url-mysql-make", "make", "db-status", "must point at PostgreSQL", env={"DATABASE_URL": "mysql://u@h/db"}, database="none"),
    r("url-garbage-just", "just", "db-status", "not a valid database URL", env={"DATABASE_URL": "::nonsense::"}, database="none"),
    r("url-nodb-cli", "cli", "status", "names no database", env={"DATABASE_URL": "postgresql://u@localhost:5432"}, database="none"),
    r("port-99999-cli", "cli", "start-db", "DBTASKS_PG_PORT", "1..65535", env={"DBTASKS_PG_PORT": "99999", "DB_SERVER": "local"}, database="none"),
    r("port-99999-make", "make", "start-db", "DBTASKS_PG_PORT", "1..65535", env={"DBTASKS_PG_PORT": "99999", "DB_SERVER": "local"}, database="none"),
    r("port-abc-just", "just", "init", "DBTASKS_PG_PORT", "1..65535", env={"DBTASKS_PG_PORT": "abc", "DB_SERVER": "local"}, database="none"),
    r("batch-abc-cli", "cli", "cleanup", "DBTASKS_CLEANUP_BATCH_SIZE", "whole number", env={"DBTASKS_CLEANUP_BATCH_SIZE": "abc"}),
    r("cleanup-no-policies-cli", "cli", "cleanup", "no retention policies", "[tool.dbtasks.cleanup.tables]"),
    r("cleanup-no-policies-make", "make", "db-cleanup", "no retention policies"),
    r("shell-noenv-cli", "cli", "--env nosuch shell", *NOENV),
    r("shell-noenv-make", "make", "db-shell", *NOENV, env={"ENV": "nosuch"}),
    r("batch-abc-flag-cli", "cli", "cleanup --batch-size abc", "--batch-size", "abc"),
    r("jobs-zero-make", "make", "dump-db JOBS=0", "JOBS", "1 or more"),
    r("keep-abc-just", "just", "backup-db abc", "KEEP", "whole number"),
    r("steps-abc-make", "make", "db-migrate-down STEPS=abc", "STEPS", "whole number"),
    r("steps-zero-cli", "cli", "downgrade --steps 0", "--steps", "1 or more"),
    r("steps-too-many-make", "make", "db-migrate-down STEPS=9", "more than the 1 revision", "make db-migrate-down STEPS=1"),
    r("steps-too-many-just", "just", "db-migrate-down 9", "more than the 1 revision", "just db-migrate-down"),
    r("steps-and-to-cli", "cli", f"downgrade --steps 1 --to {HEAD}", "--steps or --to"),
    r("to-unknown-make", "make", "db-migrate-down TO=zzz", "unknown revision 'zzz'", "make db-migrate-history"),
    r("to-unknown-cli", "cli", "downgrade --to zzz", "unknown revision 'zzz'", "dbtasks history"),
    r("to-current-just", "just", "db-migrate-down", f"at {HEAD} already", code=1, env={"TO": HEAD}),
    r("upgrade-unknown-cli", "cli", "upgrade zzz", "unknown revision 'zzz'"),
    # -- db-migrate-sql given revisions it does not know, or no database to read the start from
    r("migrate-sql-from-unknown-make", "make", "db-migrate-sql FROM=zzz", "FROM=zzz: no such revision", "make db-migrate-history", "FROM=base"),
    r("migrate-sql-to-unknown-just", "just", "db-migrate-sql base zzz", "TO=zzz: no such revision", "just db-migrate-history"),
    r("migrate-sql-to-unknown-cli", "cli", "migrate-sql --to zzz", "--to zzz: no such revision", "dbtasks history"),
    r("migrate-sql-closed-make", "make", "db-migrate-sql", CLOSED, database="closed"),
    r("migrate-sql-noenv-cli", "cli", "--env nosuch migrate-sql", *NOENV),
    r("migrate-sql-syntax-just", "just", "db-migrate-sql", "cannot be parsed", "bad_syntax.py", project="badrev"),
    # -- db-schema-load: no schema.sql, one that draws only some tables, a database that is not empty
    r("schema-load-missing-cli", "cli", "schema-load", "cannot load the schema: docs/database/schema.sql is missing", "dbtasks regenerate-db-diagram"),
    r("schema-load-partial-just", "just", "db-schema-load", "holds only some tables", "just regenerate-db-diagram", env={"DBTASKS_DIAGRAM_EXCLUDE": "users"}),
    r("schema-load-not-empty-make", "make", "db-schema-load", "it is not empty (it has table public.alembic_version)", "make db-migrate",
      env={"DBTASKS_DOCS_DIR": str(REPO / "docs" / "database")}),
    r("schema-load-closed-cli", "cli", "schema-load", CLOSED, database="closed", env={"DBTASKS_DOCS_DIR": str(REPO / "docs" / "database"), "DBTASKS_CONFIRM": "app"}),
    r("schema-load-setting-make", "make", "init-db", "DBTASKS_SCHEMA_LOAD", "auto, never", env={"DBTASKS_SCHEMA_LOAD": "sometimes"}),
    # -- the revision ledger: none in this project, or an accept without its revision or reason
    r("ledger-missing-make", "make", "db-ledger", "there is no revision ledger", "make db-ledger-init"),
    r("ledger-broken-create-make", "make", "db-migrate-create MIGRATE_MSG=x", "is not a ledger line", "keep both sides' lines", "make db-ledger-update", project="badledger"),
    r("ledger-broken-merge-cli", "cli", "merge-heads", "is not a ledger line", "dbtasks ledger --update", project="badledger"),
    r("ledger-broken-squash-cli", "cli", f"squash --upto {HEAD}", "is not a ledger line", "dbtasks ledger --update", project="badledger"),
    r("ledger-accept-no-rev-make", "make", "db-ledger-accept", "ACCEPT is empty", "make db-ledger-accept ACCEPT=", project="goodledger"),
    r("ledger-accept-unedited-make", "make", f"db-ledger-accept ACCEPT={HEAD} REASON=safe", f"{HEAD} is not edited", "make db-ledger", project="goodledger"),
    r("ledger-accept-unknown-just", "just", "db-ledger-accept nosuchrev safe", "ACCEPT=nosuchrev matches no revision", "just db-ledger` to list", project="goodledger"),
    r("ledger-update-missing-cli", "cli", "ledger --update", "there is no revision ledger", "dbtasks ledger --init"),
    r("ledger-accept-no-reason-just", "just", f"db-ledger-accept {HEAD}", "needs a reason", f"just db-ledger-accept {HEAD}"),
    r("ledger-reason-no-rev-make", "make", "db-ledger-accept REASON=safe", "ACCEPT is empty", "make db-ledger-accept ACCEPT="),
    r("ledger-accept-and-init-cli", "cli", f"ledger --init --accept {HEAD} --reason x", "pass one of --init"),
    r("ledger-check-format-cli", "cli", "check-ledger --format xml", "Invalid value for '--format'", "dbtasks check-ledger --help"),
    r("msg-empty-make", "make", "db-migrate-create", "MIGRATE_MSG is empty", "make db-migrate-create MIGRATE_MSG="),
    r("msg-empty-just", "just", "db-migrate-empty", "MIGRATE_MSG is empty", "just"),
    r("msg-symbols-cli", "cli", ["revision", "--empty", "-m", ";;;"], "no letters or digits"),
    r("no-changes-make", "make", "db-migrate-create MIGRATE_MSG=nothing", "no difference between the models and the database", "db-migrate-empty"),  # make turns exit 1 into 2
    r("merge-one-head-make", "make", "db-migrate-merge-heads", "only one head"),  # make: 2
    r("merge-one-head-cli", "cli", "merge-heads", "only one head", code=1),
    r("config-dir-cli", "cli", "-c /tmp status", "/tmp is a directory"),
    r("config-missing-cli", "cli", "-c /nonexistent/alembic.ini history", "/nonexistent/alembic.ini"),
    r("env-and-prod-cli", "cli", "--env staging --prod status", "--prod and --env"),
    r("unknown-verb-cli", "cli", "frobnicate", "No such command"),
    r("format-missing-cli", "cli", "format-revision bad/missing.py", "bad/missing.py"),
    r("format-nonutf8-cli", "cli", "format-revision bad/latin1.py", "not UTF-8"),
    # -- dbtasks adopt where it cannot, or may not, change anything
    r("adopt-no-ini-cli", "cli", "adopt --yes", "no alembic.ini in this directory", "alembic init alembic", project="bare"),
    r("adopt-ini-missing-cli", "cli", "-c bad/missing.ini adopt --yes", "no alembic.ini at", "alembic init alembic"),
    r("adopt-ini-latin1-cli", "cli", "-c bad/latin1.py adopt --yes", "not UTF-8"),
    r("adopt-bad-pyproject-cli", "cli", "adopt --yes", "pyproject.toml is not valid TOML", "dbtasks adopt", project="badtoml"),
    r("adopt-no-terminal-cli", "cli", "adopt", "asks before it changes files", "--yes", "--dry-run"),
    r("adopt-yes-and-dry-run-cli", "cli", "adopt --yes --dry-run", "contradict", "pass one"),
    # -- data commands given the wrong files
    r("restore-fifo-make", "make", "restore-db FILE=bad/fifo", "not a regular file"),
    r("restore-fifo-cli", "cli", "restore-db -f bad/fifo", "not a regular file"),
    r("restore-missing-just", "just", "restore-db bad/missing.dump", "does not exist", "just dump-db"),
    r("restore-notdump-cli", "cli", "restore-db -f bad/latin1.py", "not a readable pg_dump archive"),
    r("restore-emptydir-make", "make", "restore-db FILE=bad", "not a pg_dump directory archive"),
    r("restore-nofile-make", "make", "restore-db", "no dump file given", "make restore-db FILE="),
    r("dump-exists-cli", "cli", "dump-db -o bad/latin1.py", "already exists"),
    r("dump-format-cli", "cli", "dump-db --format zip", "zip"),
    r("dump-and-restore-foreign-cli", "cli", "dump-and-restore --from prod", "127.0.0.1:", env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod"}),
    r("dump-and-restore-foreign-make", "make", "dump-and-restore FROM=prod", "127.0.0.1:", env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod"}),
    r("dump-and-restore-nofrom-make", "make", "dump-and-restore", "no source environment", "make dump-and-restore FROM="),
    r("dump-and-restore-mode-just", "just", "dump-and-restore prod weird", "MODE", env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x"}),
    r("dump-and-restore-from-url-make", "make", "dump-and-restore FROM=postgresql://u@127.0.0.1:1/x", "FROM takes an environment's name", "PROD_DATABASE_URL"),
    # A source database that does not exist: fix the URL (never "create-db", which would make an empty one there).
    r("dump-and-restore-source-missing-cli", "cli", "dump-and-restore --from prod", "does not exist", "fix PROD_DATABASE_URL (it names",
      env={"PROD_DATABASE_URL": "{missing_url}"}),
    r("dump-and-restore-noenv-cli", "cli", "dump-and-restore --from nosuch", "'nosuch' is not configured"),
    r("rehearse-prod-noenv-cli", "cli", "rehearse-prod --from nosuch", "'nosuch' is not configured", "NOSUCH_DATABASE_URL", "--rows 1000000"),
    r("rehearse-prod-noprod-make", "make", "db-rehearse-prod", "'prod' is not configured", "PROD_DATABASE_URL", "make db-rehearse-prod ROWS=1000000"),
    r("rehearse-prod-rows-make", "make", "db-rehearse-prod ROWS=abc", "ROWS has an invalid value 'abc'", "whole number"),
    r("rehearse-prod-rows-just", "just", ("ROWS=0", "db-rehearse-prod"), "ROWS has an invalid value '0'"),
    r("rehearse-prod-both-cli", "cli", "rehearse-prod --from prod --rows 5", "give one", "--rows 5"),
    r("rehearse-prod-foreign-cli", "cli", "rehearse-prod --rows 5", "not the project's own", "development server", env={"DBTASKS_DEV_DATABASES": ""}),
    # masking rules (tests/test_masking.py): read before anything is dumped; schema errors from check-masking
    r("masking-strategy-cli", "cli", "dump-and-restore --from prod", "unknown strategy 'scramble'", "email",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING": '{"users.email": "scramble"}'}),
    r("masking-nocolumn-make", "make", "dump-and-restore FROM=prod", "names no column", "table.column",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING": '{"users": "email"}'}),
    r("masking-notjson-cli", "cli", "dump-and-restore --from prod", "DBTASKS_MASKING has an invalid value",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING": "users.email=email"}),
    r("masking-nofile-just", "just", "dump-and-restore prod", "masking file nope.toml does not exist",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING_FILE": "nope.toml"}),
    r("masking-mask0-make", "make", "dump-and-restore FROM=prod MASK=0", "unmasked (MASK=0)", "CONFIRM=",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING": '{"users.email": "email"}'}),
    r("masking-mask0-cli", "cli", "dump-and-restore --from prod --no-mask", "unmasked (--no-mask)", "--confirm",
      env={"PROD_DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/prod", "DBTASKS_MASKING": '{"users.email": "email"}'}),
    r("masking-column-just", "just", "db-check-masking", "table 'users' has no column 'emial'",
      env={"DBTASKS_MASKING": '{"users.emial": "email"}'}),
    r("masking-fk-make", "make", "db-check-masking", "foreign key projects.owner_id -> users.id is masked differently", "users.id is 'hash'",
      "projects.owner_id is 'keep'", "give both columns the same rule",
      env={"DBTASKS_MASKING": '{"users.id": "hash", "projects.owner_id": "keep", "tasks.assignee_id": "hash", "comments.author_id": "hash"}'}),
    # MODE=full masks before the copy has foreign keys: the source's are checked before anything is dumped.
    r("masking-fk-full-cli", "cli", "dump-and-restore --from prod --mode full", "foreign key projects.owner_id -> users.id is masked differently",
      env={"PROD_DATABASE_URL": "{good_url}", "DBTASKS_MASKING": '{"users.id": "hash", "projects.owner_id": "keep", "tasks.assignee_id": "hash", "comments.author_id": "hash"}'},
      database="missing"),
    r("masking-sqltypo-just", "just", "db-check-masking", "'sql:left(nmae, 3)' fails on users.name", 'column "nmae" does not exist', "fix the rule",
      env={"DBTASKS_MASKING": '{"users.name": "sql:left(nmae, 3)"}'}),
    r("masking-fixedcast-cli", "cli", "check-masking", "'fixed:maybe' fails on projects.archived (boolean)", "invalid input syntax for type boolean",
      env={"DBTASKS_MASKING": '{"projects.archived": "fixed:maybe"}'}),
    r("script-exit-make", "make", "run-script SCRIPT=scripts/backfills/exits.py", "called sys.exit(3)", "rolled back"),
    r("script-exit-cli", "cli", "run-script scripts/backfills/exits.py", "called sys.exit(3)"),
    r("script-import-exit-just", "just", "run-script scripts/backfills/exits_on_import.py", "sys.exit(4) while being imported"),
    r("script-raises-cli", "cli", "run-script scripts/backfills/raises.py", "raises.py failed: RuntimeError", "rolled back"),
    r("script-leak-other-env-cli", "cli", "run-script scripts/backfills/leaks.py", "***", "rolled back",
      env={"PROD_DATABASE_URL": "postgresql://u:s3cretProdPw@db.example/x", "STAGING_DATABASE_URL": "postgresql://u:s3cretStagePw@db.example/y"}),
    r("script-outside-make", "make", "run-script SCRIPT=/etc/hostname", "outside the repository"),
    r("script-missing-cli", "cli", "run-script scripts/backfills/nope.py", "does not exist"),
    r("script-none-just", "just", "run-script", "no script given"),
    r("script-notpy-cli", "cli", "run-script bad/fifo", "not"),
    r("script-nomain-cli", "cli", "run-script scripts/backfills/nomain.py", "no main() function"),
    r("script-dryrun-cli", "cli", "run-script --dry-run scripts/backfills/exits.py", "does not support a dry run"),
    # -- broken project files
    r("dotenv-latin1-cli", "cli", "status", ".env is not UTF-8", project="badenv"),
    r("dotenv-latin1-make", "make", "db-status", ".env is not UTF-8", project="badenv"),
    r("syntax-status-cli", "cli", "status", "cannot be parsed", "bad_syntax.py", project="badrev"),
    r("syntax-upgrade-make", "make", "db-migrate", "cannot be parsed", project="badrev"),
    r("syntax-history-just", "just", "db-migrate-history", "cannot be parsed", project="badrev"),
    r("syntax-heads-cli", "cli", "heads", "cannot be parsed", project="badrev"),
    r("syntax-current-make", "make", "db-migrate-current", "cannot be parsed", project="badrev"),
    # README.md's diagram markers do not pair up: refused before anything is drawn or written
    r("readme-markers-cli", "cli", "regenerate-db-diagram", "README.md line 3", "has no <!-- dbtasks:diagram:end -->", "run `dbtasks regenerate-db-diagram`", project="badreadme"),
    r("readme-markers-make", "make", "check-db-docs", "README.md line 3", "run `make regenerate-db-diagram`", project="badreadme"),
    # -- a role without CREATEDB: a restore builds a new database, so it is refused up front
    r("restore-nocreatedb-cli", "cli", "restore-db -f bad/good.dump", "may not create databases", "CREATEDB", database="weak"),
    r("restore-nocreatedb-make", "make", "restore-db FILE=bad/good.dump", "may not create databases", "ALTER ROLE", database="weak"),
    # -- retention policies that cannot be right
    r("cleanup-sqlname-cli", "cli", "cleanup", "not a table name", "[tool.dbtasks.cleanup.tables]", project="sqlname"),
    r("cleanup-sqlname-make", "make", "db-cleanup APPLY=1", "not a table name", project="sqlname"),
    r("cleanup-textcol-cli", "cli", "cleanup", "users.email", "not a timestamp", project="textcol"),
    r("cleanup-textcol-just", "just", "db-cleanup", "users.email", "not a timestamp", project="textcol"),
    # -- a program that is not PostgreSQL on the port
    r("not-postgres-cli", "cli", "status", "not a PostgreSQL server", database="http"),
    r("not-postgres-make", "make", "db-status", "not a PostgreSQL server", database="http"),
    # -- create-db and wait-db
    r("create-db-nocreatedb-cli", "cli", "create-db", "may not create databases", "CREATEDB", database="weakmissing"),
    r("create-db-nocreatedb-just", "just", "create-db", "may not create databases", "ALTER ROLE", database="weakmissing"),
    r("wait-db-timeout-abc-cli", "cli", "wait-db --timeout abc", "--timeout", "abc"),
    r("wait-db-timeout-zero-make", "make", "wait-db", "DBTASKS_WAIT_TIMEOUT", "1 or more", env={"DBTASKS_WAIT_TIMEOUT": "0"}),
    r("wait-db-closed-just", "just", "wait-db", "did not accept connections within 1s", CLOSED, database="closed", env={"DBTASKS_WAIT_TIMEOUT": "1"}),
    r("wait-db-missing-cli", "cli", "wait-db", "does not exist", "dbtasks create-db", database="missing"),
    r("wait-db-missing-make", "make", "wait-db", "does not exist", "make create-db", database="missing"),
    # -- local mode on a port held by a server that is not this project's cluster
    r("foreign-port-status-cli", "cli", "status", "not this", "DBTASKS_PG_PORT", "pg_port in [tool.dbtasks]", database="foreign"),
    r("foreign-port-migrate-make", "make", "db-migrate", "not this", "DBTASKS_PG_PORT", database="foreign"),
    r("foreign-port-start-just", "just", "start-db", "already in use", "DBTASKS_PG_PORT", database="foreign"),
    # -- db-squash refusals: nothing is written (squashgit: two heads, committed; squashdirty: an uncommitted edit)
    r("squash-no-upto-make", "make", "db-squash", "UPTO is empty", "make db-squash UPTO="),
    r("squash-stray-file-cli", "cli", f"squash --upto {HEAD}", "scratch.py in the versions directory is not a revision", "move it out", project="stray"),
    r("migrate-sql-squashed-from-make", "make", "db-migrate-sql FROM=abc123def456", f"FROM=abc123def456: db-squash folded it into the baseline {HEAD}", f"FROM={HEAD}", project="squashedbase"),
    r("history-stray-file-make", "make", "db-migrate-history", "scratch.py in the versions directory is not a revision", "move it out", project="stray"),
    r("squash-unknown-cli", "cli", "squash --upto zzz", "UPTO=zzz", "dbtasks history"),
    r("squash-unknown-just", "just", "db-squash zzz", "UPTO=zzz", "just db-migrate-history"),
    r("squash-only-base-make", "make", f"db-squash UPTO={HEAD}", "nothing to squash"),  # make: 2
    r("squash-not-ancestor-cli", "cli", "squash --upto b1", "not an ancestor of head b2", "merge", project="squashgit"),
    r("squash-not-ancestor-make", "make", "db-squash UPTO=b1", "not an ancestor of head b2", "make db-migrate-merge-heads", project="squashgit"),
    r("squash-dirty-cli", "cli", "squash --upto a1", "git tree is dirty", "commit or stash", "dbtasks squash --upto a1", project="squashdirty"),
    r("squash-dirty-just", "just", "db-squash a1", "git tree is dirty", "just db-squash a1", project="squashdirty"),
    r("squash-no-git-cli", "cli", "squash --upto a1", "not in a git repository", project="squashnogit"),
]


def _snapshot_db(url: URL) -> tuple:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            catalog = conn.execute(sa.text(
                "select c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
                "from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                "left join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped "
                "where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' "
                "order by 1, 3"
            )).all()
            tables = [t for (t,) in conn.execute(sa.text("select tablename from pg_tables where schemaname = 'public' order by 1"))]
            counts = {t: conn.execute(sa.text(f'select count(*) from "{t}"')).scalar() for t in tables}
            databases = conn.execute(sa.text("select count(*) from pg_database")).scalar()
            return tuple(catalog), counts, databases
    finally:
        engine.dispose()


def _snapshot_files(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts or ".pytest_cache" in path.parts:
            continue
        st = path.lstat()
        if stat.S_ISREG(st.st_mode):
            out[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
        else:
            out[str(path.relative_to(root))] = stat.filemode(st.st_mode)
    return out


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stage(tmp_path_factory, dbtasks_server_url: URL, dbtasks_template: URL):
    """The shared projects, database and fake server every row runs against."""
    root = tmp_path_factory.mktemp("bad_input")
    main = copy_project(root / "main")
    bad = main / "bad"
    bad.mkdir()
    os.mkfifo(bad / "fifo")
    (bad / "latin1.py").write_bytes(b"# caf\xe9\nx = 1\n")
    backfills = main / "scripts" / "backfills"
    (backfills / "ok.py").write_text("def main(session):\n    return 'ok'\n")
    (backfills / "exits.py").write_text("import sys\n\n\ndef main(session):\n    sys.exit(3)\n")
    (backfills / "exits_on_import.py").write_text("import sys\n\nsys.exit(4)\n")
    (backfills / "raises.py").write_text("def main(session):\n    raise RuntimeError('boom')\n")
    (backfills / "leaks.py").write_text("def main(session):\n    raise RuntimeError('cannot reach s3cretProdPw nor s3cretStagePw')\n")
    (backfills / "nomain.py").write_text("x = 1\n")
    badenv = copy_project(root / "badenv")
    (badenv / ".env").write_bytes(b"DBTASKS_PG_PORT=6545\n# caf\xe9\n")
    badrev = copy_project(root / "badrev")
    # dbtasks adopt: a directory that is no Alembic project, and one whose pyproject.toml is not TOML.
    bare = root / "bare"
    bare.mkdir()
    badtoml = root / "badtoml"
    badtoml.mkdir()
    (badtoml / "alembic.ini").write_text("[alembic]\nscript_location = alembic\n")
    (badtoml / "pyproject.toml").write_text("[project\nname = 'x'\n")
    badreadme = copy_project(root / "badreadme")
    # A revision ledger with a line that is not one: a revision verb fails before it writes a file.
    badledger = copy_project(root / "badledger")
    (badledger / "migrations.sum").write_text("f689c66d672f not-a-hash alembic/versions/x.py\n")
    # A baseline that db-squash made (its module names the revisions it replaced).
    squashedbase = copy_project(root / "squashedbase")
    with next((squashedbase / "alembic" / "versions").glob(f"*{HEAD}*.py")).open("a") as fh:
        fh.write('\ndbtasks_squashed = ("abc123def456",)\n')
    stray = copy_project(root / "stray")
    (stray / "alembic" / "versions" / "scratch.py").write_text("x = 1\n")  # no revision: Alembic reads every .py there
    goodledger = copy_project(root / "goodledger")
    shutil.copy(REPO / "migrations.sum", goodledger / "migrations.sum")  # the kit's ledger: every revision as it is
    # db-squash: a git project with two heads (b1, b2 off HEAD), one with an uncommitted edit, one without git.
    squash_projects = {name: copy_project(root / name) for name in ("squashgit", "squashdirty", "squashnogit")}
    for name, revs in (("squashgit", ("b1", "b2")), ("squashdirty", ("a1",)), ("squashnogit", ("a1",))):
        for rev in revs:
            (squash_projects[name] / "alembic" / "versions" / f"{rev}_x.py").write_text(
                f'"""{rev}"""\nrevision = "{rev}"\ndown_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n\n\n'
                "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
            )
    for name in ("squashgit", "squashdirty"):
        git = ["git", "-C", str(squash_projects[name]), "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]
        (squash_projects[name] / ".gitignore").write_text("__pycache__/\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "x"]):
            subprocess.run(git + args, check=True, capture_output=True)
    with (squash_projects["squashdirty"] / "alembic" / "versions" / "a1_x.py").open("a") as fh:
        fh.write("# an edit not committed yet\n")
    (badreadme / "README.md").write_text("# App\n\n<!-- dbtasks:diagram:begin -->\n```mermaid\nerDiagram\n```\n")
    # Retention policies that cannot be right: a table name that is SQL, a text column.
    sqlname = copy_project(root / "sqlname")
    with (sqlname / "pyproject.toml").open("a") as fh:
        fh.write('\n[tool.dbtasks.cleanup.tables]\n"users; drop table users --" = { column = "created_at", older_than = "1 year" }\n')
    textcol = copy_project(root / "textcol")
    with (textcol / "pyproject.toml").open("a") as fh:
        fh.write('\n[tool.dbtasks.cleanup.tables]\nusers = { column = "email", older_than = "1 year" }\n')
    (badrev / "alembic" / "versions" / "bad_syntax.py").write_text(f'"""x"""\nrevision = "bad1"\ndown_revision = "{HEAD}"\n\n\ndef upgrade(:\n    pass\n')

    name = scratch_name("dbtasks_bad_input")
    url = create_database(dbtasks_server_url, name, template=dbtasks_template.database)
    # A role that may log in but not create databases (restore-db needs CREATEDB), and a dump to restore.
    weak = scratch_name("dbtasks_weak")
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"create role {weak} login password 'weakpw' nocreatedb"))
    finally:
        engine.dispose()
    dumped = run(["dump-db", "-o", "bad/good.dump"], main, DATABASE_URL=url_str(url))
    assert dumped.returncode == 0, dumped.stderr
    # Something that is not PostgreSQL on a port: it answers the SSL request with "H".
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    import threading

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(64)
                    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield {
            "projects": {"main": main, "badenv": badenv, "badrev": badrev, "sqlname": sqlname, "textcol": textcol, "badreadme": badreadme, "bare": bare, "badtoml": badtoml, "badledger": badledger, "goodledger": goodledger, "stray": stray, "squashedbase": squashedbase, **squash_projects},
            "url": url, "weak_url": url.set(username=weak, password="weakpw"),
            "http_port": listener.getsockname()[1], "root": root,
        }
    finally:
        listener.close()
        drop_database(dbtasks_server_url, name)
        engine = make_engine(dbtasks_server_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(f"drop role if exists {weak}"))
        finally:
            engine.dispose()


def _invoke(row: Row, cwd: Path, env: dict[str, str]):
    if row.runner == "make":
        return run_make(row.args[0], cwd, *row.args[1:], **env)
    if row.runner == "just":
        return run_just(list(row.args), cwd, **env)
    return run(list(row.args), cwd, **env)


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_bad_input(row: Row, stage) -> None:
    cwd = stage["projects"][row.project]
    placeholders = {"{missing_url}": url_str(stage["url"].set(database="dbtasks_no_such_db")), "{good_url}": url_str(stage["url"])}
    env = {k: placeholders.get(v, v) for k, v in row.env}
    env.setdefault("DBTASKS_PG_DATA", str(stage["root"] / f"pgdata-{row.id}"))
    if row.database == "good":
        env.setdefault("DATABASE_URL", url_str(stage["url"]))
    elif row.database == "weak":
        env.setdefault("DATABASE_URL", url_str(stage["weak_url"]))
    elif row.database == "closed":
        env.setdefault("DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{_closed_port()}/app")
        env.setdefault("DBTASKS_START_TIMEOUT", "1")  # init-db waits for an external server to come up: not 5 s here
    elif row.database == "http":
        env.setdefault("DATABASE_URL", f"postgresql://u:pw@127.0.0.1:{stage['http_port']}/app")
    elif row.database == "missing":
        env.setdefault("DATABASE_URL", url_str(stage["url"].set(database="dbtasks_no_such_db")))
    elif row.database == "weakmissing":
        env.setdefault("DATABASE_URL", url_str(stage["weak_url"].set(database="dbtasks_no_such_db")))
    elif row.database == "foreign":
        u = stage["url"]
        local = {"DB_SERVER": "local", "DBTASKS_PG_HOST": u.host, "DBTASKS_PG_PORT": str(u.port), "DBTASKS_PG_USER": u.username, "DBTASKS_PG_PASSWORD": u.password or "", "DBTASKS_DB_NAME": u.database}
        for key, value in local.items():
            env.setdefault(key, value)
    db_before = _snapshot_db(stage["url"])
    files_before = _snapshot_files(cwd)

    proc = _invoke(row, cwd, env)

    line = assert_one_line_error(proc, *row.words, code=row.code)
    assert "unexpected" not in line, line
    for secret in ("s3cretProdPw", "s3cretStagePw"):
        assert secret not in proc.stderr + proc.stdout
    assert _snapshot_files(cwd) == files_before
    assert _snapshot_db(stage["url"]) == db_before
    assert not (stage["root"] / f"pgdata-{row.id}").exists(), "a cluster directory was left behind"


def test_the_table_covers_every_verb_and_runner() -> None:
    from dbtasks import names

    assert len(ROWS) >= 80
    assert {row.runner for row in ROWS} == {"make", "just", "cli"}
    assert len({row.id for row in ROWS}) == len(ROWS)
    seen = " ".join(" ".join(row.args) for row in ROWS)
    for recipe in names.rows():
        if recipe.verb is None:
            continue
        verb = recipe.verb.split()[-1] if recipe.verb.startswith("--") else recipe.verb.split()[0]
        assert verb in seen or recipe.recipe in seen, recipe.recipe
