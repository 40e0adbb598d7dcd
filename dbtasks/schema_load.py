"""Schema load: build a new database from the checked-in schema.sql instead of replaying every revision.

Rails' ``db:schema:load`` for Alembic. ``regenerate-db-diagram`` writes
``docs/database/schema.sql`` (the normalized ``pg_dump --schema-only`` of a
scratch database migrated to head) with a header line::

    -- dbtasks: revision <head(s)>; migrations sha256:<hash>; schema sha256:<hash>

:func:`schema_load` runs that file with ``psql -v ON_ERROR_STOP=1 -1`` (one
transaction: all or nothing) on the configured database, then stamps it at
the recorded head(s) through the project's env.py, so ``status`` says up to
date. It is faster than replaying a long history (the gain grows with the
churn: columns and indexes added then dropped are never built), and it builds
a database even when an old revision can no longer run (it imports
application code that has since changed).

When is schema.sql current? Proving it by migrating a scratch database and
comparing (what ``check-db-docs`` does) costs a replay, which is what loading
avoids. The cheap test used here (:func:`freshness`), sound for a file that
``regenerate-db-diagram`` wrote:

1. the SHA-256 of every revision file (name and text, line endings
   normalized), recomputed now, equals the one recorded: no revision was
   added, removed or edited since the file was generated, so the head is
   still the recorded one (an edit of an old revision changes the schema a
   replay builds even when the head stays, and is caught too);
2. the SHA-256 of the SQL below the header equals the one recorded: nobody
   edited the SQL by hand.

No revision module is imported: on a 1,000-revision history the test costs
milliseconds, where loading the history costs seconds.

Generation is deterministic and ``check-db-docs`` (in ``make check``, in CI)
proves that the committed file is what the migrations produce; the hashes
prove it has not moved since. schema.sql drawn with only some tables
(``diagram`` include/exclude/schemas settings) cannot build the database and
is refused.

Refusals (one line each, nothing changed): schema.sql missing, without the
header line, stale by any of the three tests, partial; the database not empty
(any table, view, sequence, user type or function in a user schema, or an
``alembic_version`` table).

schema.sql holds the schema, not rows: rows that revisions insert
(reference data) are not in a loaded database, as with Rails; such a project
loads them with its seed or sets ``schema_load = never``.

:func:`should_load` is the decision of ``init``/``init-db`` and of the pytest
plugin's template under ``schema_load = auto`` (``DBTASKS_SCHEMA_LOAD``):
load when the database is empty and schema.sql is current, replay otherwise;
``never`` always replays.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from dbtasks import migrations, names
from dbtasks.clients import find_client, first_error, run_client
from dbtasks.config import Settings, shown_path
from dbtasks.database import connect, describe, server_version
from dbtasks.diagram.docs import SCHEMA_FILE, output_dir
from dbtasks.diagram.options import docs_options
from dbtasks.diagram.schema_sql import Stamp, history_fingerprint, read_stamp
from dbtasks.errors import DbtasksError, MigrationError, UsageError, read_text
from dbtasks.safety import guard

# What pg_dump puts before the DDL and normalize_dump removes from schema.sql:
# function bodies are not checked (a function may name a table created later),
# names are schema-qualified, messages kept to warnings.
PREAMBLE = """\
SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;
"""


class StaleSchema(UsageError):
    """schema.sql cannot build the database: missing, partial, edited or behind the migrations."""


class NotEmpty(UsageError):
    """The database already holds a schema: loading one must start from an empty database."""


@dataclasses.dataclass
class LoadResult:
    database: str
    path: str  # schema.sql as shown
    revisions: list[str]  # stamped at
    skipped: int  # revisions not replayed
    seconds: float


def schema_path(settings: Settings) -> Path:
    """The checked-in schema.sql (``docs_dir``, docs/database by default)."""
    return output_dir(settings, docs_options(settings)) / SCHEMA_FILE


@dataclasses.dataclass
class Freshness:
    """Whether schema.sql can build the database: ``stamp`` when it can, else ``reason``."""

    path: Path
    shown: str
    stamp: Stamp | None = None
    sql: str = ""
    reason: str | None = None
    files: int = 0  # revision files (what a load does not replay)

    @property
    def current(self) -> bool:
        return self.reason is None


def freshness(settings: Settings, script: ScriptDirectory | None = None) -> Freshness:
    """The cheap test of schema.sql against the migrations (see the module's docstring); no database."""
    options = docs_options(settings)
    path = schema_path(settings)
    shown = shown_path(path, settings.project_dir)
    result = Freshness(path, shown)
    if options.schemas or options.include or options.exclude:
        result.reason = f"{shown} holds only some tables (the diagram's schemas/include/exclude settings), so it cannot build the database"
        return result
    if not path.is_file():
        result.reason = f"{shown} is missing"
        return result
    sql = read_text(path)
    stamp = read_stamp(sql)
    if stamp is None:
        result.reason = f"{shown} does not record the revision it was generated at (no `-- dbtasks: revision` line)"
        return result
    if not stamp.body_matches:
        result.reason = f"{shown} was edited by hand: its SQL no longer matches the hash in its header"
        return result
    script = script or migrations.script_directory(settings)
    with migrations.translate_errors(settings):
        fingerprint, count = history_fingerprint(script)
    if fingerprint != stamp.migrations:
        have = ", ".join(stamp.revisions) or "base"
        result.reason = f"{shown} is stale: the revision files changed (added, removed or edited) since it was generated at {have}"
        return result
    result.files = count
    result.stamp, result.sql = stamp, sql
    return result


# Anything a schema load would collide with: relations, user types (not a
# table's row type or an array type), functions and procedures, outside the
# system schemas and not owned by an extension.
OCCUPANT_SQL = """
select kind || ' ' || name from (
    select 1 as o, case c.relkind when 'S' then 'sequence' when 'v' then 'view' when 'm' then 'materialized view' else 'table' end as kind,
           n.nspname || '.' || c.relname as name, c.oid as oid, 'pg_class'::regclass as cls
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
    union all
    select 2, 'type', n.nspname || '.' || t.typname, t.oid, 'pg_type'::regclass
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where t.typtype in ('e', 'd', 'c', 'r', 'm') and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
    union all
    select 3, 'function', n.nspname || '.' || p.proname, p.oid, 'pg_proc'::regclass
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
) q
join pg_namespace n on n.nspname = split_part(q.name, '.', 1)
where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
  and n.nspname not like 'pg_temp_%' and n.nspname not like 'pg_toast_temp_%'
  and not exists (select 1 from pg_depend d where d.classid = q.cls and d.objid = q.oid and d.deptype = 'e')
order by case when q.name like '%.alembic_version' then 0 else o end, q.name
limit 1
"""


def occupant(conn: sa.Connection) -> str | None:
    """The first object found in the database (``table public.users``), or None when it is empty."""
    found = conn.execute(sa.text(OCCUPANT_SQL)).scalar()
    conn.rollback()
    return found


def _require_empty(conn: sa.Connection, url: URL, verb: str) -> None:
    found = occupant(conn)
    if found is not None:
        raise NotEmpty(
            f"refusing to load the schema into {describe(url)}: it is not empty (it has {found})",
            f"`{names.command(verb)}` only builds a new database; upgrade this one with `{names.command('db-migrate')}`",
        )


def _require_current(fresh: Freshness) -> Stamp:
    if fresh.stamp is None:
        raise StaleSchema(
            f"cannot load the schema: {fresh.reason}",
            f"{names.run('regenerate-db-diagram')} and commit schema.sql, or replay the migrations with `{names.command('db-migrate')}`",
        )
    return fresh.stamp


def choose_psql(settings: Settings, url: URL, major: int | None = None) -> str:
    """A psql for the server of ``url`` (of PostgreSQL ``major``): the same major version preferred."""
    major = major or server_version(url) // 10000
    return find_client("psql", settings.pg_bin, prefer=major, why=f"the server is PostgreSQL {major}").path


def run_schema_sql(settings: Settings, url: URL, sql: str, major: int | None = None) -> None:
    """Run ``sql`` (schema.sql's text) on ``url`` with psql, in one transaction, stopping at the first error."""
    psql = choose_psql(settings, url, major)
    fd, tmp = tempfile.mkstemp(prefix="dbtasks-schema-", suffix=".sql")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(PREAMBLE)
            fh.write(sql)
        code, lines = run_client([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", tmp], url)
    finally:
        os.unlink(tmp)
    if code != 0:
        raise MigrationError(
            f"loading schema.sql into {describe(url)} failed (nothing was created): {first_error(lines, 'psql')}",
            f"{names.run('regenerate-db-diagram')} with this PostgreSQL, or replay the migrations with `{names.command('db-migrate')}`",
        )


def _stamper(revisions: list[str]):
    """A migration function for env.py that writes ``revisions`` into the empty version table.

    Alembic's own stamp resolves the revisions in the loaded history (every
    revision module imported); the history is known to be the one schema.sql
    was dumped at (the fingerprint matched), so the rows are written directly
    into the version table env.py configured (its name and schema).
    """

    def stamp(heads, context):
        if heads:
            raise MigrationError(f"the database was stamped at {', '.join(heads)} meanwhile; nothing was loaded over it")
        with context.begin_transaction(_per_migration=True):
            context._ensure_version_table()
            for rev in revisions:
                context.connection.execute(context._version.insert().values(version_num=rev))
        return []

    return stamp


def schema_load(settings: Settings, confirm: str | None = None, ask=None) -> LoadResult:
    """Create the database's schema from schema.sql and stamp it at the revision recorded there.

    Refuses (nothing changed) when schema.sql is missing, partial, edited or
    stale against the migrations, or when the database is not empty. The
    load runs in one transaction; the stamp goes through env.py under the
    migration lock, like an upgrade.
    """
    started = time.monotonic()
    fresh = freshness(settings)
    stamp = _require_current(fresh)
    guard(settings, "load the schema", confirm, ask, upgrade=True)
    revisions = list(stamp.revisions)

    def load(cfg) -> None:
        conn = cfg.attributes["connection"]  # the one holding the migration lock
        _require_empty(conn, settings.url, "db-schema-load")
        major = (conn.dialect.server_version_info or (0,))[0]
        run_schema_sql(settings, settings.url, fresh.sql, major if major >= 10 else None)
        script = ScriptDirectory.from_config(cfg)
        with EnvironmentContext(cfg, script, fn=_stamper(revisions), destination_rev=tuple(revisions)):
            script.run_env()

    migrations._migrate(settings, load)
    now = migrations.current_revisions(settings)
    if sorted(now) != sorted(revisions):
        raise MigrationError(
            f"the schema was loaded into {describe(settings.url)} but env.py did not keep the stamp at {', '.join(revisions)} (it is at {', '.join(now) or 'base'})",
            f"drop and recreate the database, then `{names.command('db-migrate')}`",
        )
    return LoadResult(describe(settings.url), fresh.shown, revisions, fresh.files, time.monotonic() - started)


def database_is_empty(url: URL) -> bool:
    with connect(url) as conn:
        return occupant(conn) is None


def should_load(settings: Settings, url: URL | None = None, script: ScriptDirectory | None = None) -> Freshness | None:
    """The ``schema_load = auto`` decision: schema.sql's freshness when it should be loaded into ``url``, else None.

    None under ``never``, when schema.sql is not current (replay is always
    correct), or when the database is not empty.
    """
    if settings.schema_load == "never":
        return None
    try:
        fresh = freshness(settings, script)
    except DbtasksError:
        return None
    if not fresh.current:
        return None
    try:
        if not database_is_empty(url or settings.url):
            return None
        choose_psql(settings, url or settings.url)
    except DbtasksError:
        return None  # no psql, or the database cannot be reached: the replay reports why
    return fresh


def load_scratch(settings: Settings, url: URL, fresh: Freshness) -> list[str]:
    """Load schema.sql into the new database ``url`` (ours: a template or scratch) and stamp it.

    The stamp runs through the project's env.py as
    :func:`dbtasks.migrations.upgrade_scratch` runs it. Returns the revisions stamped.
    """
    assert fresh.stamp is not None
    run_schema_sql(settings, url, fresh.sql)
    revisions = list(fresh.stamp.revisions)
    script = migrations.script_directory(migrations.settings_on(settings, url))
    migrations.run_env(settings, url, _stamper(revisions), script, destination_rev=tuple(revisions))
    return revisions
