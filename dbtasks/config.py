"""Settings: every option declared once, resolved by one precedence rule.

Each field of :class:`Settings` is declared with :func:`setting`, which holds
its default, its environment variable, its ``[tool.dbtasks]`` key, the make
and just variable that carries it, and its meaning. Everything else is derived
from that one declaration: :data:`SETTINGS`, the resolution in
:func:`load_settings`, ``dbtasks settings`` and the README's configuration
table (a test compares them).

A project setting is resolved, first match wins, from:

1. a command-line flag (passed to :func:`load_settings` as ``overrides``);
2. its environment variable (``DATABASE_URL``, ``DBTASKS_PG_PORT``, ...);
3. the same variable in the project's ``.env`` file;
4. its key in ``[tool.dbtasks]`` of ``pyproject.toml`` (``pg_port = 6545``, or
   a sub-table such as ``[tool.dbtasks.diagram] output_dir``);
5. its default.

A *command argument* (the revision message, ``STEPS``, ``FILE``, ``APPLY``,
``--confirm`` ...) belongs to one run: it is read from its flag or its
environment variable only, never from ``.env`` or pyproject.toml, so no file
can switch on ``APPLY`` or a confirmation for every run.

``--env NAME`` (``ENV=NAME`` for make and just) replaces the database URL with
``NAME_DATABASE_URL`` read from the environment or ``.env``; ``--prod`` means
``--env prod``. An explicit ``--database-url`` together with ``--env`` is
refused: two different answers to "which database" must never be settled
silently.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from dbtasks.errors import ConfigError, read_text, register_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# -- parsers: raw text or TOML value -> typed value; ValueError when malformed ------------

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def parse_bool(value: Any) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is an error."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError(f"{value!r} is not a yes/no value")


def parse_list(value: Any) -> tuple[str, ...]:
    """A list from TOML, a comma-separated string, or a JSON-style ``["a", "b"]``."""
    if isinstance(value, (list, tuple)):
        items = [str(v) for v in value]
    else:
        text = str(value).strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError:
                loaded = None
            items = [str(v) for v in loaded] if isinstance(loaded, list) else text.strip("[]").split(",")
        else:
            items = text.split(",")
    return tuple(i.strip().strip("'\"").strip() for i in items if i.strip().strip("'\"").strip())


def parse_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(value)
    return int(str(value).strip())


def at_least(minimum: int) -> Callable[[Any], int]:
    """A whole number of ``minimum`` or more."""

    def parse(value: Any) -> int:
        number = parse_int(value)
        if number < minimum:
            raise ValueError(f"{value!r} is less than {minimum}")
        return number

    return parse


parse_positive_int = at_least(1)
parse_nonnegative_int = at_least(0)


def parse_port(value: Any) -> int:
    """A TCP port, 1..65535: checked before initdb, so a typo leaves no cluster behind."""
    try:
        number = parse_int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a TCP port (1..65535)") from None
    if not 1 <= number <= 65535:
        raise ValueError(f"{value!r} is not a TCP port (1..65535)")
    return number


def parse_duration(value: Any) -> str:
    """A PostgreSQL time setting such as ``5s``, ``500ms``, ``2min`` or ``0``, without spaces (it travels in PGOPTIONS)."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d+)\s*(us|ms|s|min|h|d)?", text)
    if not match:
        raise ValueError(f"{value!r} is not a duration such as 5s, 500ms or 2min")
    return match.group(1) + (match.group(2) or "ms")


def parse_str(value: Any) -> str:
    return str(value).strip()


def parse_table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("expected a TOML table")
    return dict(value)


def parse_json_table(value: Any) -> dict:
    """A TOML table, or (from the environment) a JSON object such as ``{"users.email": "email"}``."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("expected a JSON object") from None
    return parse_table(value)


def one_of(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in choices and text.lower() in choices:  # MODE=FULL means full
            text = text.lower()
        if text not in choices:
            raise ValueError(f"one of {', '.join(choices)}")
        return text

    parse.choices = choices  # type: ignore[attr-defined]
    return parse


# -- the declaration ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one setting is named, read and documented. Built from the field of :class:`Settings`."""

    name: str
    default: Any
    variable: str
    help: str
    parse: Callable[[Any], Any]
    key: tuple[str, ...]  # where it lives under [tool.dbtasks]; () for command arguments
    make: str | None  # the make/just variable that carries it, when it is not `variable` itself
    group: str
    secret: bool
    aliases: tuple[str, ...]  # older variable names and keys, still read

    @property
    def is_argument(self) -> bool:
        """A command argument: read from its flag and the environment only."""
        return not self.key

    @property
    def key_text(self) -> str:
        if not self.key:
            return ""
        if len(self.key) == 1:
            return self.key[0]
        return f"[{'.'.join(self.key[:-1])}] {self.key[-1]}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def setting(
    default: Any,
    variable: str,
    help: str,
    parse: Callable[[Any], Any] = parse_str,
    *,
    key: str | tuple[str, ...] | None = None,
    argument: bool = False,
    make: str | None = None,
    group: str = "general",
    secret: bool = False,
    aliases: tuple[str, ...] = (),
) -> Any:
    """Declare one field of :class:`Settings` (its only declaration)."""
    return dataclasses.field(
        default=default,
        metadata={
            "setting": dict(
                variable=variable, help=help, parse=parse, key=key, argument=argument,
                make=make, group=group, secret=secret, aliases=aliases,
            )
        },
    )


@dataclasses.dataclass(frozen=True)
class Derived:
    """A default computed from the project (its name, its path), so no kit value reaches another project.

    ``rule`` says how, for ``dbtasks settings`` and the README's table.
    """

    rule: str
    compute: Callable[[Path], Any]

    def __call__(self, project: Path) -> Any:
        return self.compute(project)

    def __str__(self) -> str:
        return self.rule


def project_name(project: Path) -> str:
    """``[project] name`` of pyproject.toml (or ``[tool.poetry] name``), else the directory's name."""
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        data = {}
    for table in (data.get("project"), data.get("tool", {}).get("poetry")):
        name = table.get("name") if isinstance(table, dict) else None
        if isinstance(name, str) and name.strip():
            return name.strip()
    return project.name


def database_identifier(name: str) -> str:
    """``My-Shop.API`` -> ``my_shop_api``: lower case letters, digits and _, at most 63 characters, no leading digit."""
    text = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]+", "_", name.lower())).strip("_") or "db"
    if text[0].isdigit():
        text = "db_" + text
    return text[:63].rstrip("_")


# Local ports derived per project; 6545 is the kit's own (its pyproject.toml says so).
DERIVED_PORTS = tuple(p for p in range(6500, 7000) if p != 6545)


def derived_port(project: Path) -> int:
    """A port of 6500-6999 (never 6545) from a hash of the project directory's resolved path: stable per clone."""
    digest = hashlib.sha256(str(Path(project).resolve()).encode()).digest()
    return DERIVED_PORTS[int.from_bytes(digest[:8], "big") % len(DERIVED_PORTS)]


DERIVED_DB_NAME = Derived("the project's name as an identifier", lambda project: database_identifier(project_name(project)))
DERIVED_PG_PORT = Derived("6500-6999, from the project's path", derived_port)

PROTECTED_ENVS = ("prod", "production", "staging")

# Style rules of squawk that say nothing about locking or data safety; the
# lock_timeout rule is excluded because dbtasks sets lock_timeout per session.
DEFAULT_SQUAWK_EXCLUDE = (
    "require-lock-timeout",
    "require-statement-timeout",
    "prefer-robust-stmts",
    "prefer-bigint-over-int",
    "prefer-bigint-over-smallint",
    "prefer-identity",
    "prefer-text-field",
    "prefer-timestamptz",
)


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings. Build it with :func:`load_settings`; each field is one setting."""

    project_dir: Path

    # -- which database ------------------------------------------------------------
    database_url: str | None = setting(None, "DATABASE_URL", "Database to work on. Unset: the local or docker server's database.", group="database")
    env: str | None = setting(None, "DBTASKS_ENV", "Environment name; reads NAME_DATABASE_URL.", make="ENV", group="database")
    protected_envs: tuple[str, ...] = setting(PROTECTED_ENVS, "DBTASKS_PROTECTED_ENVS", "Environments where destructive verbs need the database name typed or --confirm=<dbname>.", parse_list, group="database")
    confirm: str | None = setting(None, "DBTASKS_CONFIRM", "Confirms a destructive verb on a protected database by naming it.", argument=True, make="CONFIRM", group="database")
    dev_databases: tuple[str, ...] = setting((), "DBTASKS_DEV_DATABASES", "Databases on servers other than the project's own that count as development databases (not protected unless marked): host:port, host:port/dbname, globs allowed.", parse_list, group="database")
    unattended_upgrade: bool = setting(False, "DBTASKS_UNATTENDED_UPGRADE", "Lets upgrade (forward only) run on a protected database without confirmation: for a container entrypoint.", parse_bool, argument=True, group="database")
    write: bool = setting(False, "WRITE", "db-shell: open a protected database writable (after typed confirmation).", parse_bool, argument=True, group="database")
    alembic_ini: str = setting("alembic.ini", "DBTASKS_ALEMBIC_INI", "The Alembic configuration file (-c/--config).", group="database")
    seed: str | None = setting(None, "DBTASKS_SEED", "module:function that loads demo data (db-seed). Unset or empty: none, and init skips demo data.", group="database")

    # -- the server --------------------------------------------------------------------
    db_server: str | None = setting(None, "DB_SERVER", "local, docker or external. Unset: external when DATABASE_URL is set, else local.", one_of("local", "docker", "external"), group="server")
    pg_host: str = setting("127.0.0.1", "DBTASKS_PG_HOST", "Address the local or docker server listens on.", group="server")
    pg_port: int = setting(DERIVED_PG_PORT, "DBTASKS_PG_PORT", "Port of the local or docker server. Unset: derived from the project directory's path (a hash into 6500-6999, never 6545), so two projects' servers never share a port.", parse_port, group="server")
    pg_data: str = setting("data/postgres/pgdata", "DBTASKS_PG_DATA", "Data directory of the local server.", group="server")
    pg_bin: str | None = setting(None, "PG_BIN", "Directory of PostgreSQL binaries. Unset: pg_config --bindir, else the pgserver wheel.", group="server")
    pg_user: str = setting("postgres", "DBTASKS_PG_USER", "Database superuser of the local or docker server.", group="server")
    pg_password: str = setting("postgres", "DBTASKS_PG_PASSWORD", "Password of that user (never printed).", group="server", secret=True)
    db_name: str = setting(DERIVED_DB_NAME, "DBTASKS_DB_NAME", "Database name on the local or docker server. Unset: the project's name ([project] name in pyproject.toml, else its directory's name) in lower case, other characters as _.", group="server")
    server_user: str = setting("postgres", "DBTASKS_SERVER_USER", "OS user that runs the local server when dbtasks runs as root.", group="server")
    start_timeout: int = setting(30, "DBTASKS_START_TIMEOUT", "Seconds to wait for the server to accept connections.", parse_positive_int, group="server")
    wait_timeout: int = setting(30, "DBTASKS_WAIT_TIMEOUT", "Seconds wait-db waits for the database to accept connections; wait-db --timeout on the command line.", parse_positive_int, group="server")
    compose_file: str = setting("docker-compose.yml", "DBTASKS_COMPOSE_FILE", "Compose file of the docker backend.", group="server")
    compose_service: str = setting("postgres", "DBTASKS_COMPOSE_SERVICE", "Service name of the database in the compose file.", group="server")

    # -- migrations ----------------------------------------------------------------------
    lock_timeout: str = setting("5s", "DBTASKS_LOCK_TIMEOUT", "PostgreSQL lock_timeout of every connection dbtasks opens or hands to env.py (0: no limit).", parse_duration, group="migrations")
    statement_timeout: str | None = setting(None, "DBTASKS_STATEMENT_TIMEOUT", "PostgreSQL statement_timeout of those connections. Unset: the server's.", parse_duration, group="migrations")
    lock_retries: int = setting(3, "DBTASKS_LOCK_RETRIES", "How often a migration that hit lock_timeout is tried again, with backoff.", parse_nonnegative_int, group="migrations")
    schema_load: str = setting("auto", "DBTASKS_SCHEMA_LOAD", "auto: init, init-db and the pytest plugin's template build a new empty database from docs/database/schema.sql when it is current (else replay the migrations); never: always replay.", one_of("auto", "never"), group="migrations")
    message: str | None = setting(None, "MIGRATE_MSG", "What a new revision does (db-migrate-create, db-migrate-empty).", argument=True, group="migrations")
    steps: int | None = setting(None, "STEPS", "How many revisions db-migrate-down undoes (default 1).", parse_positive_int, argument=True, group="migrations")
    to_revision: str | None = setting(None, "TO", "The revision db-migrate-down goes down to, instead of STEPS (base: every revision); db-migrate-sql: the last revision to print (default: the heads).", argument=True, group="migrations")
    upto: str | None = setting(None, "UPTO", "db-squash: the revision the baseline ends at; it and every revision below it become one baseline keeping its id.", argument=True, group="migrations")

    # -- guardrails ------------------------------------------------------------------------
    since: str = setting("origin/main", "DBTASKS_SINCE", "Git base: lint and rehearse only revisions added or changed since it (falls back to main, then to all).", make="SINCE", group="checks", aliases=("DBTASKS_LINT_SINCE", "lint_since"))
    all_revisions: bool = setting(False, "DBTASKS_ALL", "Lint and rehearse every revision, whatever the git base.", parse_bool, argument=True, make="ALL", group="checks")
    output_format: str = setting("text", "DBTASKS_FORMAT", "Output of the checks: text, or json (a list of findings).", one_of("text", "json"), argument=True, make="FORMAT", group="checks")
    lint_allowed_imports: tuple[str, ...] = setting(("alembic_postgresql_enum",), "DBTASKS_LINT_ALLOWED_IMPORTS", "Packages a revision may import besides the standard library, alembic and sqlalchemy.", parse_list, group="checks")
    lint_squawk_exclude: tuple[str, ...] = setting(DEFAULT_SQUAWK_EXCLUDE, "DBTASKS_LINT_SQUAWK_EXCLUDE", "squawk rules that are not reported (style rules by default).", parse_list, group="checks")
    lint_pg_version: str | None = setting("16", "DBTASKS_LINT_PG_VERSION", "PostgreSQL version squawk judges the SQL for (e.g. 13, 16.2).", group="checks")
    roundtrip_irreversible: tuple[str, ...] = setting((), "DBTASKS_ROUNDTRIP_IRREVERSIBLE", "Revision ids (comma-separated) whose downgrade is not tested (skipped with a warning).", parse_list, group="checks")
    roundtrip_min_revision: str | None = setting(None, "DBTASKS_ROUNDTRIP_MIN_REVISION", "Oldest revision whose downgrade is tested; older ones are only upgraded.", group="checks")
    envpy_allowed_hosts: tuple[str, ...] = setting((), "DBTASKS_ENVPY_ALLOWED_HOSTS", "Hosts env.py may reach besides the scratch database while dbtasks runs it (e.g. a secrets service).", parse_list, group="checks")
    scratch_setup: str | None = setting(None, "DBTASKS_SCRATCH_SETUP", "SQL file run on every new scratch database before the first revision (objects the history expects but does not create).", group="checks")
    rehearse_rows: int = setting(20, "DBTASKS_REHEARSE_ROWS", "Generated rows per table before the new revisions are applied.", parse_positive_int, group="checks")
    rehearse_lock_threshold: str = setting("1s", "DBTASKS_REHEARSE_LOCK_THRESHOLD", "db-rehearse-prod: an ACCESS EXCLUSIVE lock on a table (or one that blocks its writes) held this long or longer is a finding (e.g. 1s, 500ms).", parse_duration, group="checks")
    rehearse_rewrite_rows: int = setting(10000, "DBTASKS_REHEARSE_REWRITE_ROWS", "db-rehearse-prod: a table rewrite of a table with this many rows or more is a finding.", parse_nonnegative_int, group="checks")
    reuse: bool = setting(False, "REUSE", "db-rehearse-prod: rehearse on the copy of FROM kept by the last run instead of copying it again.", parse_bool, argument=True, group="checks")
    rows: int | None = setting(None, "ROWS", "db-rehearse-prod: rehearse on generated rows, this many per table, instead of a copy of FROM (e.g. 1000000).", parse_positive_int, argument=True, group="checks")
    ledger_file: str | None = setting(None, "DBTASKS_LEDGER", "The revision ledger (a checksum per revision file). Unset: migrations.sum next to alembic.ini.", group="checks")
    accept: str | None = setting(None, "ACCEPT", "db-ledger-accept: the revision whose edit is accepted into the ledger.", argument=True, group="checks")
    reason: str | None = setting(None, "REASON", "db-ledger-accept: why the edit is safe (kept in the ledger as a comment).", argument=True, group="checks")

    # -- schema docs -------------------------------------------------------------------------
    docs_dir: str = setting("docs/database", "DBTASKS_DOCS_DIR", "Where diagram.mmd, schema.sql and diagram.svg live.", key=("diagram", "output_dir"), group="docs")
    diagram_schemas: tuple[str, ...] = setting((), "DBTASKS_DIAGRAM_SCHEMAS", "Schemas to draw. Unset: every user schema.", parse_list, key=("diagram", "schemas"), group="docs")
    diagram_include: tuple[str, ...] = setting((), "DBTASKS_DIAGRAM_INCLUDE", "Draw only tables matching these globs, e.g. billing.*.", parse_list, key=("diagram", "include"), group="docs")
    diagram_exclude: tuple[str, ...] = setting((), "DBTASKS_DIAGRAM_EXCLUDE", "Leave out tables matching these globs, e.g. *_archive.", parse_list, key=("diagram", "exclude"), group="docs")
    diagram_alembic_version: bool = setting(False, "DBTASKS_DIAGRAM_ALEMBIC_VERSION", "Draw and dump the alembic_version table.", parse_bool, key=("diagram", "alembic_version"), group="docs")
    diagram_owners: bool = setting(False, "DBTASKS_DIAGRAM_OWNERS", "Keep OWNER TO statements in schema.sql.", parse_bool, key=("diagram", "owners"), group="docs")
    diagram_privileges: bool = setting(False, "DBTASKS_DIAGRAM_PRIVILEGES", "Keep GRANT/REVOKE statements in schema.sql.", parse_bool, key=("diagram", "privileges"), group="docs")
    diagram_svg: bool | None = setting(None, "DBTASKS_DIAGRAM_SVG", "Render diagram.svg with Graphviz dot. Unset: when dot is installed.", parse_bool, key=("diagram", "svg"), group="docs")
    from_database: bool = setting(False, "FROM_DATABASE", "Draw the configured database as it is instead of a scratch database migrated to head.", parse_bool, argument=True, group="docs")

    # -- data ------------------------------------------------------------------------------------
    dump_dir: str = setting("dumps", "DBTASKS_DUMP_DIR", "Directory of dump-db and dump-and-restore files.", group="data")
    dump_format: str = setting("custom", "DBTASKS_DUMP_FORMAT", "custom (one file) or directory (parallel dump with dump_jobs).", one_of("custom", "directory"), group="data")
    dump_jobs: int = setting(2, "DBTASKS_DUMP_JOBS", "Parallel pg_dump jobs for the directory format.", parse_positive_int, group="data")
    dump_compress: int = setting(1, "DBTASKS_DUMP_COMPRESS", "gzip level of dumps and backups (0 none - 9 smallest); dump-and-restore dumps uncompressed unless it is set.", parse_int, group="data")
    dump_exclude_data: tuple[str, ...] = setting((), "DBTASKS_DUMP_EXCLUDE_DATA", "Table patterns whose rows are left out of dumps, e.g. public.logs,public.emails.", parse_list, group="data")
    restore_jobs: int = setting(2, "DBTASKS_RESTORE_JOBS", "Parallel pg_restore jobs.", parse_positive_int, group="data")
    restore_owner: str | None = setting(None, "DBTASKS_RESTORE_OWNER", "Role that owns everything a restore creates. Unset: the connecting user.", group="data")
    backup_dir: str = setting("backups", "DBTASKS_BACKUP_DIR", "Directory of backup-db files.", group="data")
    backup_keep: int = setting(7, "DBTASKS_BACKUP_KEEP", "How many verified backups backup-db keeps.", parse_positive_int, group="data")
    cleanup_tables: dict | None = setting(None, "DBTASKS_CLEANUP_TABLES", "Retention policies: table = column, or table = {column, older_than}.", parse_table, key=("cleanup", "tables"), group="data")
    cleanup_orphans: tuple[str, ...] = setting((), "DBTASKS_CLEANUP_ORPHANS", "Parent tables whose rows go once nothing references them.", parse_list, key=("cleanup", "orphans"), group="data")
    cleanup_older_than: str | None = setting(None, "DBTASKS_CLEANUP_OLDER_THAN", "Retention age of the policies that name none, e.g. 1 year.", key=("cleanup", "older_than"), group="data")
    cleanup_batch_size: int = setting(5000, "DBTASKS_CLEANUP_BATCH_SIZE", "Rows per delete transaction of db-cleanup.", parse_positive_int, key=("cleanup", "batch_size"), group="data")
    cleanup_lock_timeout: str = setting("2s", "DBTASKS_CLEANUP_LOCK_TIMEOUT", "lock_timeout of each delete batch.", key=("cleanup", "lock_timeout"), group="data")
    file: str | None = setting(None, "FILE", "The dump file to write (dump-db) or to restore (restore-db).", argument=True, group="data")
    source: str | None = setting(None, "FROM", "Environment dump-and-restore and db-rehearse-prod copy from, e.g. prod; db-migrate-sql: the revision to start after (base: an empty database) instead of the database's current one.", argument=True, group="data")
    mode: str = setting("schema", "MODE", "schema: our migrations at the dump's revision, then the rows; full: a plain full restore.", one_of("schema", "full"), argument=True, group="data")
    jobs: int | None = setting(None, "JOBS", "Parallel pg_dump/pg_restore jobs of this run.", parse_positive_int, argument=True, group="data")
    keep: int | None = setting(None, "KEEP", "How many backups this backup-db run keeps.", parse_positive_int, argument=True, group="data")
    script: str | None = setting(None, "SCRIPT", "The backfill script run-script runs.", argument=True, group="data")
    dry_run: bool = setting(False, "DRY_RUN", "Ask the script to only count; its writes are rolled back.", parse_bool, argument=True, group="data")
    older_than: str | None = setting(None, "OLDER_THAN", "Retention age for every cleanup policy of this run, e.g. 1 year.", argument=True, group="data")
    apply: bool = setting(False, "APPLY", "Delete the rows db-cleanup counts (without it: a dry run).", parse_bool, argument=True, group="data")
    all_rows: bool = setting(False, "ALL_ROWS", "Let db-cleanup delete every row of a table when its policy dooms them all.", parse_bool, argument=True, group="data")
    force: bool = setting(False, "FORCE", "restore-db: restore a dump at a revision this checkout does not have.", parse_bool, argument=True, group="data")
    masking: dict | None = setting(None, "DBTASKS_MASKING", "Masking rules of dump-and-restore: \"table.column\" = \"strategy\" (null, fixed:<value>, hash, email, name, phone, text:<n>, keep, sql:<expression>); a JSON object in the variable.", parse_json_table, group="data")
    masking_file: str | None = setting(None, "DBTASKS_MASKING_FILE", "A TOML file of more masking rules (its [masking] table, or its top-level keys).", group="data")
    masking_seed: str | None = setting(None, "DBTASKS_MASKING_SEED", "Key of the masking hashes: the same seed masks a value the same way every time (never printed). Unset: the project's name.", group="data", secret=True)
    mask: bool = setting(True, "MASK", "MASK=0: dump-and-restore copies rows unmasked despite masking rules (needs the local database's name typed, or CONFIRM=<dbname>).", parse_bool, argument=True, group="data")

    # Where each value came from: "flag", "environment", ".env", "pyproject", "default",
    # "derived" (a default computed from the project: db_name, pg_port), or NAME_DATABASE_URL.
    sources: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    # -- derived values --------------------------------------------------

    @property
    def server_kind(self) -> str:
        """``local``, ``docker`` or ``external``."""
        if self.db_server:
            return self.db_server
        return "external" if self.database_url else "local"

    @property
    def url(self) -> URL:
        """The database URL as a SQLAlchemy URL object."""
        if self.database_url:
            return parse_url(self.database_url, self.url_origin)
        return URL.create(
            "postgresql+psycopg2",
            username=self.pg_user,
            password=self.pg_password,
            host=self.pg_host,
            port=self.pg_port,
            database=self.db_name,
        )

    @property
    def database_name(self) -> str:
        return self.url.database or ""

    @property
    def is_protected(self) -> bool:
        """True when the selected environment is listed as protected."""
        return bool(self.env) and self.env.lower() in {e.lower() for e in self.protected_envs}

    def path(self, value: str) -> Path:
        """Resolve a path setting relative to the project directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.project_dir / p

    @property
    def alembic_ini_path(self) -> Path:
        return self.path(self.alembic_ini)

    @property
    def data_dir(self) -> Path:
        return self.path(self.pg_data)

    @property
    def url_origin(self) -> str:
        """Where the database URL came from, as a user would name it in a fix."""
        if self.env:
            return env_variable(self.env)
        return "--database-url" if self.sources.get("database_url") == "flag" else "DATABASE_URL"

    def with_(self, **changes: Any) -> "Settings":
        """A copy with some values replaced (scratch databases, tests)."""
        return dataclasses.replace(self, **changes)


def _declarations() -> tuple[Setting, ...]:
    out = []
    for f in dataclasses.fields(Settings):
        meta = f.metadata.get("setting")
        if meta is None:
            continue
        key = meta["key"]
        if meta["argument"]:
            key = ()
        elif key is None:
            key = (f.name,)
        elif isinstance(key, str):
            key = (key,)
        out.append(Setting(
            name=f.name, default=f.default, variable=meta["variable"], help=meta["help"], parse=meta["parse"],
            key=tuple(key), make=meta["make"], group=meta["group"], secret=meta["secret"], aliases=meta["aliases"],
        ))
    return tuple(out)


SETTINGS: tuple[Setting, ...] = _declarations()
SETTING_BY_NAME = {s.name: s for s in SETTINGS}
_KNOWN_KEYS = {s.key for s in SETTINGS if s.key} | {(a,) for s in SETTINGS for a in s.aliases if not a.isupper()}


def env_variable(env: str) -> str:
    """The variable that holds the URL of environment ``env``: ``prod`` -> ``PROD_DATABASE_URL``."""
    return re.sub(r"[^A-Z0-9]", "_", env.upper()) + "_DATABASE_URL"


def parse_url(text: str, origin: str = "DATABASE_URL") -> URL:
    """Parse a PostgreSQL URL or raise a one-line :class:`ConfigError`.

    ``postgres://`` (Heroku style) is accepted; a bare ``postgresql://`` gets the
    psycopg2 driver.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{origin} is empty", "set it to postgresql://user:password@host:port/dbname")
    text = text.strip()
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise ConfigError(
            f"{origin} is not a valid database URL",
            "expected postgresql://user:password@host:port/dbname",
        ) from exc
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"{origin} must point at PostgreSQL, not {url.get_backend_name()!r}",
            "expected postgresql://user:password@host:port/dbname",
        )
    if not url.database:
        raise ConfigError(f"{origin} names no database", "append /dbname to the URL")
    try:
        url.port  # noqa: B018 - parsing the port raises for "host:abc"
    except ValueError as exc:  # pragma: no cover - make_url already checks
        raise ConfigError(f"{origin} has an invalid port", "use host:5432") from exc
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    register_secret(url.password, url.username)
    return url


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables of this process while the block runs."""
    saved = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def shown_path(path: str | Path, base: Path | None = None) -> str:
    """A path as messages show it: relative to ``base`` (default: the current directory) when below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to((base or Path.cwd()).resolve()))
    except ValueError:
        return str(path)


def find_project_dir(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding pyproject.toml or alembic.ini."""
    start = (start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / "pyproject.toml").is_file() or (candidate / "alembic.ini").is_file():
            return candidate
    return start


def _read_pyproject(project_dir: Path) -> dict:
    path = project_dir / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})", "fix the file") from exc
    section = data.get("tool", {}).get("dbtasks", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.dbtasks] in {path} is not a table", "write it as a [tool.dbtasks] section")
    _check_keys(section, path)
    return section


def _check_keys(section: dict, path: Path, prefix: tuple[str, ...] = ()) -> None:
    """An unknown key is a typo until proven otherwise: say so, with the known keys."""
    tables = {k[: len(prefix) + 1] for k in _KNOWN_KEYS if len(k) > len(prefix) + 1 and k[: len(prefix)] == prefix}
    for name, value in section.items():
        here = (*prefix, name)
        if here in _KNOWN_KEYS:
            continue
        if here in tables:
            if not isinstance(value, dict):
                raise ConfigError(f"[tool.dbtasks] {name} in {path} must be a table", f"write it as [tool.dbtasks.{'.'.join(here)}]")
            _check_keys(value, path, here)
            continue
        known = sorted(".".join(k[len(prefix):]) for k in _KNOWN_KEYS if k[: len(prefix)] == prefix and len(k) == len(prefix) + 1) + sorted(t[-1] for t in tables)
        where = f"[tool.dbtasks{''.join('.' + p for p in prefix)}]"
        raise ConfigError(f"unknown key {name!r} in {where} of {path}", f"known keys: {', '.join(known)}")


def _lookup(table: dict, key: tuple[str, ...]) -> Any:
    value: Any = table
    for part in key:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _read_dotenv(project_dir: Path) -> dict[str, str]:
    path = project_dir / ".env"
    if not path.is_file():
        return {}
    read_text(path)  # a file that is not UTF-8 gets one clear line
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _origin(setting: Setting, source: str) -> str:
    if source == "flag":
        return setting.flag
    if source == "pyproject":
        return f"[tool.dbtasks] {setting.key_text}"
    return setting.variable


def load_settings(
    overrides: dict[str, Any] | None = None,
    project_dir: Path | str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Resolve every setting by the precedence in this module's docstring.

    ``overrides`` holds flag values (``None`` means "not given"). Pass
    ``environ`` to read variables from a mapping other than ``os.environ``.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = set(overrides) - set(SETTING_BY_NAME)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    project = Path(project_dir).resolve() if project_dir else find_project_dir()
    environ = dict(os.environ if environ is None else environ)
    dotenv = _read_dotenv(project)
    # Every password dbtasks knows of is redacted, not only the one in use:
    # a script's error may quote another environment's URL.
    for name, text in [*dotenv.items(), *environ.items()]:
        if name.endswith("DATABASE_URL") and text:
            with contextlib.suppress(Exception):
                known = make_url(text.strip())
                register_secret(known.password, known.username)
    pyproject = _read_pyproject(project)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        variables = (s.variable, *(a for a in s.aliases if a.isupper()))
        keys = (s.key, *((a,) for a in s.aliases if not a.isupper())) if s.key else ()
        layers: list[tuple[str, Any]] = [("flag", overrides.get(s.name))]
        layers += [("environment", environ.get(v)) for v in variables]
        if not s.is_argument:
            layers += [(".env", dotenv.get(v)) for v in variables]
            layers += [("pyproject", _lookup(pyproject, k)) for k in keys]
        for source, raw in layers:
            if raw is None or (isinstance(raw, str) and raw.strip() == ""):
                continue
            try:
                values[s.name] = s.parse(raw)
            except (TypeError, ValueError) as exc:
                if getattr(s.parse, "choices", None):
                    detail = f"use {exc}"
                elif s.parse in (parse_port, parse_duration):
                    detail = f"use a valid value: {exc}"
                elif s.parse in (parse_int, parse_positive_int, parse_nonnegative_int):
                    kind = {parse_positive_int: "a whole number of 1 or more", parse_nonnegative_int: "a whole number of 0 or more"}.get(s.parse, "a whole number")
                    detail = f"use {kind} ({s.help.rstrip('.')})"
                else:
                    detail = f"use a valid value ({s.help.rstrip('.')})"
                raise ConfigError(f"{_origin(s, source)} has an invalid value {raw!r}", detail) from None
            sources[s.name] = source
            break
        else:
            if isinstance(s.default, Derived):
                values[s.name] = s.default(project)
                sources[s.name] = "derived"
            else:
                values[s.name] = s.default
                sources[s.name] = "default"

    env = values.get("env")
    if env:
        variable = env_variable(env)
        if sources.get("database_url") == "flag":
            raise ConfigError(
                f"--database-url and --env {env} both name the database to use",
                f"pass one of them (--env {env} reads {variable})",
            )
        url = environ.get(variable) or dotenv.get(variable)
        if not url:
            raise ConfigError(
                f"environment {env!r} is not configured",
                f"set {variable} in the environment or in .env",
            )
        values["database_url"] = url
        sources["database_url"] = variable
        if sources.get("db_server") == "default":
            values["db_server"] = "external"

    settings = Settings(project_dir=project, sources=sources, **values)
    register_secret(settings.pg_password, settings.pg_user)
    # Validate the URL now so a malformed one fails before anything runs.
    settings.url  # noqa: B018
    return settings


# -- documentation --------------------------------------------------------------------


def shown_value(settings: Settings, s: Setting) -> str:
    """A setting's value as ``dbtasks settings`` prints it (secrets hidden)."""
    value = getattr(settings, s.name)
    if s.secret and value:
        return "***"
    if s.name == "database_url" and value:
        return settings.url.render_as_string(hide_password=True)
    return _text(value)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) if value else ""
    return str(value)


def markdown_table() -> str:
    """The README's configuration table, generated from :data:`SETTINGS`."""
    rows = ["| setting | variable | `[tool.dbtasks]` key | default | meaning |", "|---|---|---|---|---|"]
    for s in SETTINGS:
        variable = f"`{s.variable}`" + (f" (make/just `{s.make}`)" if s.make else "")
        key = f"`{s.key_text}`" if s.key else "command argument"
        default = f"`{_text(s.default)}`" if _text(s.default) else "—"
        rows.append(f"| `{s.name}` | {variable} | {key} | {default} | {s.help} |")
    return "\n".join(rows) + "\n"
