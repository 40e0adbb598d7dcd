"""Thin functions over ``alembic.command``: upgrade, downgrade, revision, status, ...

Each takes the :class:`~dbtasks.config.Settings` first and returns data; the
CLI prints it. Alembic's ``CommandError`` and driver errors come out as
:class:`~dbtasks.errors.DbtasksError` subclasses that say what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from dbtasks import names
from dbtasks.config import Settings, load_settings
from dbtasks.database import advisory_lock, connect, connection, describe, make_engine, start_hint, translate
from dbtasks.errors import (
    ConfigError,
    DbtasksError,
    MigrationError,
    NothingToDo,
    UnknownRevision,
    UsageError,
    read_text,
    redact,
)
from dbtasks.safety import guard

# One advisory lock key for "migrating this database"; advisory locks are per database.
MIGRATION_LOCK_KEY = zlib.crc32(b"dbtasks:migrate")


# -- configuration ----------------------------------------------------------


def alembic_config(settings: Settings, connection: sa.Connection | None = None, quiet: bool = False) -> Config:
    """An Alembic Config for ``settings.alembic_ini``.

    The URL is put where any env.py finds it: ``config.attributes`` (ours) and
    ``sqlalchemy.url`` (env.py files that read alembic.ini), so the checks work
    on Alembic projects that dbtasks did not create.
    """
    path = settings.alembic_ini_path
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not an alembic.ini", f"pass -c {path / 'alembic.ini'}")
    if not path.is_file():
        raise ConfigError(f"{path} not found", "pass -c path/to/alembic.ini (or set DBTASKS_ALEMBIC_INI)")
    read_text(path)  # not UTF-8: one clear line instead of a UnicodeDecodeError
    config = Config(str(path))
    config.attributes["dbtasks_settings"] = settings
    if connection is not None:
        config.attributes["connection"] = connection
    if quiet:
        config.attributes["dbtasks_quiet_logging"] = True
    url = settings.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def settings_for(config: Config) -> Settings:
    """The settings an env.py should use: the ones dbtasks passed, or fresh ones."""
    settings = config.attributes.get("dbtasks_settings")
    if settings is None:
        project = Path(config.config_file_name).resolve().parent if config.config_file_name else None
        settings = load_settings(project_dir=project)
    return settings


def online_engine(config: Config) -> sa.Engine:
    """The engine an env.py migrates with (no pooling)."""
    return make_engine(settings_for(config).url)


@contextlib.contextmanager
def migration_lock(connection: sa.Connection, config: Config | None = None) -> Iterator[None]:
    """Hold the migration advisory lock, and set lock_timeout, around a migration run.

    A connection that arrives inside a transaction belongs to the caller: the
    lock is then transaction-scoped and nothing is committed here.
    """
    lock_timeout = settings_for(config).lock_timeout if config is not None else Settings.lock_timeout
    if connection.in_transaction():
        connection.execute(sa.text("select pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        connection.execute(sa.text("select set_config('lock_timeout', :v, true)"), {"v": lock_timeout})
        yield
        return
    # The lock is taken before lock_timeout is set: waiting for another
    # migrating process may take longer than a table lock should.
    with advisory_lock(connection, MIGRATION_LOCK_KEY):
        connection.execute(sa.text("select set_config('lock_timeout', :v, false)"), {"v": lock_timeout})
        connection.commit()
        try:
            yield
        finally:
            if connection.in_transaction():
                connection.rollback()
            connection.execute(sa.text("reset lock_timeout"))
            connection.commit()


class _Chatter(logging.Filter):
    """Drops the two lines Alembic logs on every run; keeps "Running upgrade ..."."""

    NOISE = ("Context impl ", "Will assume ", "Detected sequence named ")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOISE)


def quiet_alembic_chatter() -> None:
    """Call from env.py after fileConfig to keep migration output to what matters."""
    for name in ("alembic.runtime.migration", "alembic.ddl.postgresql"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Chatter) for f in logger.filters):
            logger.addFilter(_Chatter())


# -- error translation ------------------------------------------------------


@contextlib.contextmanager
def translate_errors(settings: Settings) -> Iterator[None]:
    """Alembic and driver errors become one-line DbtasksErrors with a remedy."""
    try:
        yield
    except DbtasksError:
        raise
    except CommandError as exc:
        raise command_error(str(exc)) from None
    except OperationalError as exc:
        text = str(exc.orig)
        if "lock timeout" in text:
            raise MigrationError(
                f"a migration waited longer than lock_timeout={settings.lock_timeout} for a table lock",
                "find the blocking session in pg_stat_activity, or raise DBTASKS_LOCK_TIMEOUT",
            ) from None
        connection_trouble = ("could not connect", "Connection refused", "authentication failed")
        if any(t in text for t in connection_trouble) or re.search(r'database "[^"]+" does not exist', text):
            raise translate(exc, settings.url, start_hint(settings), settings.url_origin) from None
        raise MigrationError(f"the migration failed: {redact(_first_line(text))}") from None
    except DBAPIError as exc:
        raise MigrationError(f"the migration failed: {redact(_first_line(str(exc.orig)))}") from None
    except ImportError as exc:
        raise MigrationError(f"env.py or a revision cannot be imported: {exc}", "fix the import, or run from the project directory") from None


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "unknown error"


def command_error(text: str) -> DbtasksError:
    """Map Alembic's CommandError texts to errors that say what to do."""
    text = redact(text)
    if "Can't locate revision identified by" in text or "No such revision or branch" in text:
        match = re.search(r"(?:identified by|revision or branch) '([^']*)'", text)
        rev = match.group(1) if match else "?"
        return UnknownRevision(f"unknown revision {rev!r}", f"see `{names.command('db-migrate-history')}` for the known revisions")
    if "Target database is not up to date" in text:
        return MigrationError("the database is not up to date with the migrations", f"{names.run('db-migrate')} first, then create the revision")
    if "Multiple head revisions are present" in text or "Multiple heads are present" in text:
        return MigrationError(
            "multiple head revisions are present",
            f"{names.run('db-migrate-merge-heads')} (or `{names.command('db-migrate-linearize')}`), see `{names.command('db-migrate-heads')}`",
        )
    if "Relative revision" in text and "didn't produce" in text:
        return UsageError(f"cannot go that far: {text}", f"see `{names.command('db-migrate-current')}` and `{names.command('db-migrate-history')}`")
    return MigrationError(text)


# -- data types ---------------------------------------------------------------


def revision_ids(down: Any) -> tuple[str, ...]:
    """``down_revision`` (None, "a", or a tuple) as a tuple of ids."""
    if not down:
        return ()
    if isinstance(down, (list, tuple)):
        return tuple(down)
    return (down,)



@dataclasses.dataclass
class Revision:
    """One revision of the history, as the CLI shows it."""

    revision: str
    down_revision: tuple[str, ...]
    message: str
    path: str
    is_head: bool = False
    is_merge: bool = False
    applied: bool = False

    @classmethod
    def from_script(cls, script: Script, applied: bool = False) -> "Revision":
        return cls(
            revision=script.revision,
            down_revision=revision_ids(script.down_revision),
            message=(script.doc or "").strip(),
            path=script.path,
            is_head=script.is_head,
            is_merge=script.is_merge_point,
            applied=applied,
        )

    def line(self) -> str:
        down = ",".join(self.down_revision) or "<base>"
        flags = "".join([" (head)" if self.is_head else "", " (merge)" if self.is_merge else ""])
        return f"{down} -> {self.revision}{flags}, {self.message}"


@dataclasses.dataclass
class Status:
    """Where the database stands against the migration history."""

    database: str
    current: list[str]
    heads: list[str]
    pending: list[Revision]

    @property
    def up_to_date(self) -> bool:
        return not self.pending and set(self.current) == set(self.heads)


@dataclasses.dataclass
class MigrateResult:
    before: list[str]
    after: list[str]
    applied: list[Revision]


# -- reading ------------------------------------------------------------------


def script_directory(settings: Settings) -> ScriptDirectory:
    with translate_errors(settings):
        return ScriptDirectory.from_config(alembic_config(settings))


def current_revisions(settings: Settings) -> list[str]:
    """The revision(s) the database is at (empty list: base)."""
    with translate_errors(settings), connection(settings) as conn:
        return sorted(MigrationContext.configure(conn).get_current_heads())


def check_applied_known(settings: Settings, current: list[str], script: ScriptDirectory | None = None) -> None:
    """The database's revision must exist in this checkout's history.

    It does not when a revision was applied on another git branch and the
    developer switched away: say so, and how to get back.
    """
    script = script or script_directory(settings)
    for rev in current:
        try:
            found = script.get_revision(rev)
        except CommandError:
            found = None
        if found is None:
            raise MigrationError(
                f"the database is at revision {rev}, which is not in {script.dir} (applied on another git branch?)",
                f"switch back to that branch and {names.run('db-migrate-down')}, then switch again; or start afresh with `{names.command('volume-recreate')}`",
            )


def heads(settings: Settings) -> list[Revision]:
    """The head revisions of the history (more than one means branches to merge)."""
    script = script_directory(settings)
    with translate_errors(settings):
        return [Revision.from_script(script.get_revision(h)) for h in sorted(script.get_heads())]


def history(settings: Settings) -> list[Revision]:
    """Every revision, oldest first, marking the ones applied to the database."""
    script = script_directory(settings)
    applied: set[str] = set()
    try:
        current = current_revisions(settings)
        with translate_errors(settings):
            for rev in script.iterate_revisions(current, "base"):
                applied.add(rev.revision)
    except DbtasksError:
        pass  # history is readable without a database
    with translate_errors(settings):
        revs = list(script.walk_revisions())
    return [Revision.from_script(s, s.revision in applied) for s in reversed(revs)]


def status(settings: Settings) -> Status:
    """Current revision, head(s), and pending revisions oldest first."""
    script = script_directory(settings)
    current = current_revisions(settings)
    check_applied_known(settings, current, script)
    with translate_errors(settings):
        head_ids = sorted(script.get_heads())
        applied = {r.revision for r in script.iterate_revisions(current, "base")} if current else set()
        pending = [
            Revision.from_script(s)
            for s in reversed(list(script.walk_revisions()))
            if s.revision not in applied
        ]
    return Status(describe(settings.url), current, head_ids, pending)


# -- running env.py on a database of our choosing ----------------------------------


def settings_on(settings: Settings, url: URL) -> Settings:
    """The settings of a scratch database: the same project, that database, no environment."""
    return settings.with_(database_url=url.render_as_string(hide_password=False), env=None, db_server="external")


def run_env(
    settings: Settings,
    url: URL,
    steps: Callable[[Any, MigrationContext], Iterable[Any]],
    script: ScriptDirectory | None = None,
    **env_kwargs: Any,
) -> None:
    """Run the project's env.py once on ``url``; ``steps(heads, context)`` yields the migration steps.

    env.py gets the connection in ``config.attributes["connection"]`` and the
    URL in ``sqlalchemy.url``. ``script`` is an already loaded history (so a
    caller that walks it many times imports each revision file once).
    """
    scratch = settings_on(settings, url)
    with connect(url) as conn:
        config = alembic_config(scratch, connection=conn, quiet=True)
        with translate_errors(scratch):
            script = script or ScriptDirectory.from_config(config)
            with EnvironmentContext(config, script, fn=steps, as_sql=False, **env_kwargs):
                script.run_env()
        if conn.in_transaction():
            conn.commit()


def upgrade_scratch(settings: Settings, url: URL, target: str = "heads", script: ScriptDirectory | None = None) -> None:
    """Migrate the scratch database ``url`` to ``target`` through the project's env.py.

    The one way a scratch database reaches a revision: the checks, the schema
    docs and the pytest plugin's template all call it. No lock and no
    protection prompt: the database is ours and new.
    """
    script = script or script_directory(settings_on(settings, url))
    run_env(settings, url, lambda rev, context: script._upgrade_revs(target, rev), script, destination_rev=target)


# -- writing ------------------------------------------------------------------


def _run(settings: Settings, fn: Callable[[Config], object], quiet: bool = False) -> None:
    with translate_errors(settings):
        fn(alembic_config(settings, quiet=quiet))


@contextlib.contextmanager
def _locked(settings: Settings) -> Iterator[sa.Connection]:
    """One connection holding the migration lock for a whole command.

    The revision the database is at is read under the lock, so a process
    that waited for another one reports what it did itself (usually nothing).
    env.py takes the same lock again on this connection (advisory locks nest
    within a session).
    """
    with translate_errors(settings), connection(settings) as conn, advisory_lock(conn, MIGRATION_LOCK_KEY):
        yield conn


def _heads_on(conn: sa.Connection) -> list[str]:
    heads = sorted(MigrationContext.configure(conn).get_current_heads())
    conn.rollback()
    return heads


def _migrate(settings: Settings, fn: Callable[[Config], object]) -> tuple[list[str], list[str]]:
    with _locked(settings) as conn:
        before = _heads_on(conn)
        check_applied_known(settings, before)
        with translate_errors(settings):
            fn(alembic_config(settings, connection=conn))
        if conn.in_transaction():
            conn.commit()
        return before, _heads_on(conn)


def upgrade(settings: Settings, target: str = "head", confirm: str | None = None, ask=None) -> MigrateResult:
    """Upgrade the database to ``target`` (default: head), holding the migration lock."""
    guard(settings, f"upgrade {target}", confirm, ask)
    before, after = _migrate(settings, lambda cfg: command.upgrade(cfg, target))
    return MigrateResult(before, after, _between(settings, before, after))


def downgrade(settings: Settings, steps: int | None = 1, target: str | None = None, confirm: str | None = None, ask=None) -> MigrateResult:
    """Downgrade ``steps`` revisions, or to ``target`` (a revision or ``base``)."""
    if target is None:
        if steps is None or steps < 1:
            raise UsageError(f"STEPS must be a positive number, not {steps!r}", f"e.g. {names.command('db-migrate-down', STEPS=1)}")
        target = f"-{steps}"
    guard(settings, f"downgrade to {target}", confirm, ask)
    if not current_revisions(settings):
        raise NothingToDo("the database is at base already; nothing to downgrade")
    before, after = _migrate(settings, lambda cfg: command.downgrade(cfg, target))
    return MigrateResult(before, after, list(reversed(_between(settings, after, before))))


def downgrade_all(settings: Settings, confirm: str | None = None, ask=None) -> MigrateResult:
    """Downgrade to base: every migration undone (refused on protected environments)."""
    return downgrade(settings, target="base", confirm=confirm, ask=ask)


def _between(settings: Settings, lower: list[str], upper: list[str]) -> list[Revision]:
    """Revisions applied in ``upper`` but not in ``lower``, oldest first."""
    script = script_directory(settings)
    with translate_errors(settings):
        up = {r.revision: r for r in script.iterate_revisions(upper, "base")} if upper else {}
        low = {r.revision for r in script.iterate_revisions(lower, "base")} if lower else set()
    return [Revision.from_script(s) for rid, s in reversed(list(up.items())) if rid not in low]


def clean_message(message: str | None, variable: str = "MIGRATE_MSG") -> str:
    """Validate a revision message and make it safe inside a docstring.

    The message is only ever data: it is passed to Alembic as an argument and
    never through a shell, so quotes, ``;``, ``$(...)`` and backticks are kept
    literally and turned into ``_`` in the file name.
    """
    if message is None or not message.strip():
        raise UsageError(f"{variable} is empty", f"describe the change: {names.command('db-migrate-create', MIGRATE_MSG='add user email')}")
    message = " ".join(message.split())  # one line
    if not re.search(r"\w", message):
        raise UsageError(f"{variable}={message!r} has no letters or digits to name the file with", "use words, e.g. \"add user email\"")
    return message.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def revision(settings: Settings, message: str | None, autogenerate: bool = True) -> Revision:
    """Create a revision file; with ``autogenerate``, from the models' differences.

    An autogenerated revision with no operations is not written: that means the
    models and the database agree, and the developer probably meant
    ``db-migrate-empty``.
    """
    text = clean_message(message)
    script_directory(settings)  # fail early on a bad alembic.ini
    produced: list[bool] = []

    def drop_empty(context, revision, directives):
        script = directives[0]
        if script.upgrade_ops.is_empty():
            directives[:] = []
            produced.append(False)

    if autogenerate:
        check_applied_known(settings, current_revisions(settings))
    result = None

    def _cmd(cfg: Config) -> None:
        nonlocal result
        result = command.revision(
            cfg,
            message=text,
            autogenerate=autogenerate,
            process_revision_directives=drop_empty if autogenerate else None,
        )

    _run(settings, _cmd)
    if produced and not result:
        raise NothingToDo(
            "no difference between the models and the database; no revision written",
            f"for a hand-written migration {names.run('db-migrate-empty', MIGRATE_MSG='...')}",
        )
    if isinstance(result, list):
        result = result[0]
    return Revision.from_script(result)


def merge_heads(settings: Settings, message: str = "merge heads") -> Revision:
    """Write a merge revision over all current heads (formatted by the post-write hook)."""
    script = script_directory(settings)
    head_ids = script.get_heads()
    if len(head_ids) < 2:
        raise NothingToDo(f"there is only one head ({', '.join(head_ids) or 'none'}); nothing to merge")
    result = None

    def _cmd(cfg: Config) -> None:
        nonlocal result
        result = command.merge(cfg, revisions=list(head_ids), message=clean_message(message, "message"))

    _run(settings, _cmd)
    return Revision.from_script(result)
