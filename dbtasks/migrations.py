"""Thin functions over ``alembic.command``: upgrade, downgrade, revision, status, ...

Each takes the :class:`~dbtasks.config.Settings` first and returns data; the
CLI prints it. Alembic's ``CommandError`` and driver errors come out as
:class:`~dbtasks.errors.DbtasksError` subclasses that say what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import time
import sys
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from dbtasks import names
from dbtasks.config import Settings, load_settings, shown_path
from dbtasks.database import advisory_lock, connect, connection, describe, make_engine, session_environment, start_hint, translate
from dbtasks.envpy import EnvPyLeak, env_url, handed, sandbox
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
    _paths_relative_to_ini(config, path.resolve().parent)
    config.attributes["dbtasks_settings"] = settings
    if connection is not None:
        config.attributes["connection"] = handed(connection)
    if quiet:
        config.attributes["dbtasks_quiet_logging"] = True
    url = env_url(settings, settings.url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def import_roots(settings: Settings) -> list[Path]:
    """Directories the project's own code is imported from: the ini's, its prepend_sys_path, the project's (and src/)."""
    path = settings.alembic_ini_path
    ini_dir = path.resolve().parent
    roots = [ini_dir]
    if path.is_file():
        prepend = Config(str(path)).get_prepend_sys_paths_list() or []
        roots += [Path(p) if os.path.isabs(p) else (ini_dir / p).resolve() for p in prepend]
    roots += [settings.project_dir, settings.project_dir / "src"]
    unique: list[Path] = []
    for root in roots:
        if root.is_dir() and root not in unique:
            unique.append(root)
    return unique


def _paths_relative_to_ini(config: Config, ini_dir: Path) -> None:
    """Resolve script_location, version_locations and prepend_sys_path against the ini's directory.

    Alembic reads them relative to the current directory, which is the ini's
    directory when ``alembic`` is run as documented; dbtasks may run anywhere
    (``-c services/billing/alembic.ini``), so it makes them absolute. Without
    ``prepend_sys_path`` the ini's directory goes on the import path, so env.py
    finds the project's models without PYTHONPATH.
    """

    def absolute(value: str) -> str:
        return value if os.path.isabs(value) else str((ini_dir / value).resolve())

    location = config.get_main_option("script_location")
    if location and (":" not in location or os.path.isabs(location)):  # not a "package:dir" resource
        config.set_main_option("script_location", absolute(location).replace("%", "%%"))
    versions = config.get_version_locations_list()
    if versions:
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(absolute(v) for v in versions).replace("%", "%%"))
    prepend = config.get_prepend_sys_paths_list()
    entries = [absolute(p) for p in prepend] if prepend else [str(ini_dir)]
    for entry in reversed(entries):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if prepend:
        config.set_main_option("prepend_sys_path", "")


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
            raise LockTimeout(
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
        raise import_error(exc) from None
    except RevisionError as exc:
        raise MigrationError(redact(_first_line(str(exc))), f"see `{names.command('db-migrate-history')}` for the known revisions") from None
    except SyntaxError as exc:
        # A revision file (or env.py) that does not parse: name the file and the line.
        where = f"{shown_path(exc.filename)}:{exc.lineno}" if exc.filename else "a revision file"
        raise MigrationError(f"{where} cannot be parsed: {exc.msg}", "fix the syntax error (or save the file as UTF-8)") from None
    except UnicodeDecodeError as exc:
        raise MigrationError(f"a revision file is not UTF-8 text (byte {exc.start})", "save it as UTF-8; `dbtasks lint --all` names the file") from None


def _project_frame(exc: BaseException) -> tuple[str, int] | None:
    """The innermost traceback frame in the project's own files (not a library's)."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        library = filename.startswith((sys.prefix, sys.base_prefix, str(Path(__file__).parent), "<")) or "site-packages" in filename
        if not library:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def import_error(exc: ImportError) -> MigrationError:
    """One line naming the file that imports the missing module, the module, and the fix."""
    frame = _project_frame(exc)
    where = f"{shown_path(frame[0])}:{frame[1]}" if frame else "env.py or a revision"
    module = f"module {exc.name!r}" if exc.name else "a module"
    return MigrationError(
        f"{where} cannot import {module} ({_first_line(str(exc))})",
        "install it in this environment, or fix the import (alembic.ini's prepend_sys_path puts project directories on the import path)",
    )


class EnvPyError(MigrationError):
    """The project's env.py failed before it migrated anything."""


def env_py_failed(script: ScriptDirectory, exc: BaseException) -> EnvPyError:
    env = Path(script.dir) / "env.py"
    if isinstance(exc, DbtasksError):
        if " cannot import " in exc.message:  # already names the file, the line and the module
            return EnvPyError(exc.message, exc.remedy)
        return EnvPyError(f"{shown_path(env)} failed before migrating: {exc.message}", exc.remedy)
    frame = _project_frame(exc)
    where = f"{shown_path(frame[0])}:{frame[1]}" if frame else shown_path(env)
    text = redact(_first_line(str(exc))) if str(exc).strip() else ""
    return EnvPyError(
        f"{where}: env.py failed before migrating: {type(exc).__name__}{': ' + text if text else ''}",
        "dbtasks runs env.py on a scratch database and hands it a connection in config.attributes['connection']; "
        "see the README, 'Any Alembic project'",
    )


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
    match = re.search(r"Could not determine revision id from filename (\S+?)\.?(?:\s|$)", text)
    if match:
        return MigrationError(
            f"{match.group(1)} in the versions directory is not a revision (it declares no `revision = ...`)",
            "move it out of the versions directory (Alembic reads every .py file there), or make it a revision",
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
        return revisions_at(conn)


def revisions_at(conn: sa.Connection) -> list[str]:
    """The revision(s) the database of ``conn`` is stamped at, sorted (empty list: base)."""
    return sorted(MigrationContext.configure(conn).get_current_heads())


# db-squash (dbtasks/squash.py) writes these into a baseline revision: the ids it
# replaced and the commit it was made from, so a database stamped at a replaced
# revision gets one line saying how to reach the baseline.
SQUASHED = "dbtasks_squashed"
SQUASHED_FROM = "dbtasks_squashed_from"


def squashed_into(script: ScriptDirectory, revision: str) -> Script | None:
    """The baseline that replaced ``revision``, if a squash removed it."""
    for base in script.get_bases():
        found = script.get_revision(base)
        if found is not None and revision in (getattr(found.module, SQUASHED, None) or ()):
            return found
    return None


def _afresh(settings: Settings | None, joint: str) -> str:
    """``joint`` + the volume-recreate way out, for a database on the server dbtasks runs (nothing for DATABASE_URL's)."""
    if settings is not None and settings.server_kind == "external":
        return ""
    return f"{joint}start afresh with `{names.command('volume-recreate')}`"


def squashed_message(script: ScriptDirectory, revision: str, settings: Settings | None = None) -> MigrationError | None:
    """The one line for a database stamped at a squashed revision (None when ``revision`` was not squashed)."""
    baseline = squashed_into(script, revision)
    if baseline is None:
        return None
    commit = getattr(baseline.module, SQUASHED_FROM, None)
    where = f"`git switch --detach {commit[:12]}`" if commit else f"check out the commit before {shown_path(baseline.path)} became a baseline (`git log -- {shown_path(baseline.path)}`)"
    return MigrationError(
        f"the database is at revision {revision}, which db-squash folded into the baseline {baseline.revision} ({shown_path(baseline.path)}); it must reach {baseline.revision} with the old history once",
        f"{where}, run `{names.command('db-migrate')}`, `git switch -` back, then carry on{_afresh(settings, ', or ')}",
    )


def check_applied_known(settings: Settings, current: list[str], script: ScriptDirectory | None = None) -> None:
    """The database's revision must exist in this checkout's history.

    It does not when a revision was applied on another git branch and the
    developer switched away: say so, and how to get back.
    """
    script = script or script_directory(settings)
    with translate_errors(settings):
        unknown = [rev for rev in current if not _known(script, rev)]
    if not unknown:
        return
    rev = unknown[0]
    with translate_errors(settings):  # a revision db-squash folded into a baseline
        squashed = squashed_message(script, rev, settings)
    if squashed is not None:
        raise squashed
    found = _branch_holding(script, unknown, current)
    if found is not None:
        branch, steps, base = found
        how = names.command("db-migrate-down", TO=base[0]) if len(base) == 1 else names.command("db-migrate-down", STEPS=steps)
        raise MigrationError(
            f"the database is at revision {rev}, applied on git branch {branch!r}, which is not in {script.dir}",
            f"`git switch {branch}`, run `{how}` (undoes {steps} revision(s)), then switch back",
        )
    raise MigrationError(
        f"the database is at revision {rev}, which is not in {script.dir} (applied on another git branch?)",
        f"switch back to that branch and run `{names.command('db-migrate-down', TO='<the newest revision both branches have>')}`, then switch again{_afresh(settings, '; or ')}",
    )


def _known(script: ScriptDirectory, rev: str) -> bool:
    try:
        return script.get_revision(rev) is not None
    except CommandError:
        return False


def _branch_holding(script: ScriptDirectory, unknown: list[str], current: list[str]) -> tuple[str, int, list[str]] | None:
    """(git branch, revisions to undo there, known revisions left) for revisions applied on another branch.

    Reads the other branches' revision files with ``git grep`` (nothing is
    checked out); None when git cannot tell.
    """
    import subprocess

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(script.dir), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    branches = (git("for-each-ref", "--format=%(refname:short)", "refs/heads") or "").split()
    for branch in branches:
        if git("grep", "-q", "-F", "-e", unknown[0], branch, "--", ".") is None:
            continue
        graph = _revision_graph(branch, git)
        if not all(u in graph for u in unknown):
            continue
        undo: set[str] = set()
        base: set[str] = set()
        todo = list(current)
        while todo:
            r = todo.pop()
            if _known(script, r):
                base.add(r)
            elif r not in undo:
                if r not in graph:
                    return None
                undo.add(r)
                todo.extend(graph[r])
        return branch, len(undo), sorted(base)
    return None


def _revision_graph(branch: str, git: Callable[..., str | None]) -> dict[str, tuple[str, ...]]:
    """revision -> down revisions of every revision file on ``branch`` (read with git, not checked out)."""
    import ast

    graph: dict[str, tuple[str, ...]] = {}
    for path in (git("ls-tree", "-r", "--name-only", branch, "--", ".") or "").splitlines():
        if not path.endswith(".py"):
            continue
        text = git("show", f"{branch}:./{path}") if not path.startswith("/") else None
        try:
            tree = ast.parse(text or "")
        except (SyntaxError, ValueError):
            continue
        found: dict[str, object] = {}
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else getattr(node, "target", None)
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and getattr(node, "value", None) is not None:
                with contextlib.suppress(ValueError, SyntaxError):
                    found[target.id] = ast.literal_eval(node.value)
        if isinstance(found.get("revision"), str):
            graph[found["revision"]] = revision_ids(found.get("down_revision"))
    return graph


def heads(settings: Settings) -> list[Revision]:
    """The head revisions of the history (more than one means branches to merge)."""
    script = script_directory(settings)
    with translate_errors(settings):
        return [Revision.from_script(script.get_revision(h)) for h in sorted(script.get_heads())]


@dataclasses.dataclass
class History:
    """Every revision oldest first, applied ones marked; ``unknown``: what the database is at that these files lack."""

    revisions: list[Revision]
    unknown: list[str]


def history(settings: Settings) -> History:
    """Every revision, oldest first, marking the ones applied to the database (readable without one)."""
    script = script_directory(settings)
    applied: set[str] = set()
    unknown: list[str] = []
    try:
        current = current_revisions(settings)
    except DbtasksError:
        current = []  # history is readable without a database
    with translate_errors(settings):  # first: a revision file that does not parse is one clear line
        revs = list(script.walk_revisions())
    for rev in current:
        try:
            applied |= {r.revision for r in script.iterate_revisions(rev, "base")}
        except (CommandError, RevisionError):
            unknown.append(rev)
    return History([Revision.from_script(s, s.revision in applied) for s in reversed(revs)], unknown)


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
    return settings.with_(database_url=env_url(settings, url).render_as_string(hide_password=False), env=None, db_server="external")


def run_env(
    settings: Settings,
    url: URL,
    steps: Callable[[Any, MigrationContext], Iterable[Any]],
    script: ScriptDirectory | None = None,
    **env_kwargs: Any,
):
    """Run the project's env.py once on ``url``; ``steps(heads, context)`` yields the migration steps.

    env.py gets the connection in ``config.attributes["connection"]`` and the
    URL in ``sqlalchemy.url``, and runs in :func:`dbtasks.envpy.sandbox`, so
    every connection it opens lands on ``url``. ``script`` is an already
    loaded history (so a caller that walks it many times imports each revision
    file once). Returns the sandbox's report (what env.py asked for).
    """
    scratch = settings_on(settings, url)
    started: list[bool] = []

    def counted(rev: Any, context: MigrationContext) -> Iterable[Any]:
        started.append(True)  # env.py reached run_migrations()
        return steps(rev, context)

    with connect(url) as conn:
        config = alembic_config(scratch, connection=conn, quiet=True)
        with translate_errors(scratch):
            script = script or ScriptDirectory.from_config(config)
        try:
            with translate_errors(scratch):
                with session_environment(settings), sandbox(settings, url) as report, EnvironmentContext(config, script, fn=counted, as_sql=False, **env_kwargs):
                    script.run_env()
        except EnvPyLeak:
            raise
        except Exception as exc:  # noqa: BLE001 - before the first step, the culprit is env.py
            if started:
                raise
            raise env_py_failed(script, exc) from None
        if conn.in_transaction():
            conn.commit()
    return report


def upgrade_scratch(settings: Settings, url: URL, target: str = "heads", script: ScriptDirectory | None = None):
    """Migrate the scratch database ``url`` to ``target`` through the project's env.py.

    The one way a scratch database reaches a revision: the checks, the schema
    docs and the pytest plugin's template all call it. No lock and no
    protection prompt: the database is ours and new.
    """
    script = script or script_directory(settings_on(settings, url))
    return run_env(settings, url, lambda rev, context: script._upgrade_revs(target, rev), script, destination_rev=target)


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


class LockTimeout(MigrationError):
    """A migration waited longer than lock_timeout for a lock (retried by :func:`_migrate`)."""


def blockers(settings: Settings, exclude: Iterable[int] = ()) -> list[str]:
    """Sessions on the settings' database holding relation locks, as ``pid N (application_name 'x', ...)``.

    Read from pg_locks joined with pg_stat_activity, oldest transaction first,
    to name who kept a migration waiting.
    """
    sql = sa.text(
        "select a.pid, coalesce(nullif(a.application_name, ''), '?'), a.query_start, a.state, "
        "string_agg(distinct l.mode || ' on ' || coalesce(l.relation::regclass::text, '?'), ', ') "
        "from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where l.granted and l.locktype = 'relation' and l.database = (select oid from pg_database where datname = current_database()) "
        "and a.pid <> pg_backend_pid() and not (a.pid = any(:mine)) "
        "and l.relation not in (select oid from pg_class where relnamespace = 'pg_catalog'::regnamespace) "
        "group by a.pid, a.application_name, a.query_start, a.state, a.xact_start order by a.xact_start nulls last, a.pid"
    )
    try:
        with connection(settings) as conn:
            rows = conn.execute(sql, {"mine": list(exclude)}).all()
    except (DbtasksError, DBAPIError):
        return []
    return [
        f"pid {pid} (application_name {app!r}, query started {start:%Y-%m-%d %H:%M:%S}, {state}) holding {locks}"
        for pid, app, start, state, locks in rows
    ]


def _migrate(
    settings: Settings,
    fn: Callable[[Config], object],
    on_retry: Callable[[str], None] | None = None,
    relative: bool = False,
) -> tuple[list[str], list[str]]:
    """Run ``fn`` under the migration lock; a lock timeout is tried again ``lock_retries`` times with backoff.

    Each migration runs in its own transaction, so a retry starts where the
    failed one stopped. A relative target (``-2``) is only retried while
    nothing was applied yet, so a retry never goes further than asked.
    """
    first: list[list[str]] = []
    attempt = 0
    while True:
        mine: list[int] = []
        try:
            with _locked(settings) as conn:
                mine.append(int(conn.execute(sa.text("select pg_backend_pid()")).scalar()))
                conn.commit()
                before = _heads_on(conn)
                if not first:
                    first.append(before)
                    check_applied_known(settings, before)
                with translate_errors(settings), session_environment(settings):
                    fn(alembic_config(settings, connection=conn))
                if conn.in_transaction():
                    conn.commit()
                return first[0], _heads_on(conn)
        except LockTimeout:
            who = blockers(settings, mine)
            named = f"; blocked by {who[0]}" if who else ""
            now = current_revisions(settings)
            if attempt >= settings.lock_retries or (relative and now != first[0]):
                tried = f" {attempt + 1} times" if attempt else ""
                raise LockTimeout(
                    f"a migration waited longer than lock_timeout={settings.lock_timeout} for a lock{tried}{named}",
                    "end or wait for that session (pg_terminate_backend), or raise DBTASKS_LOCK_TIMEOUT / DBTASKS_LOCK_RETRIES",
                ) from None
            attempt += 1
            wait = min(0.5 * 2 ** (attempt - 1), 8.0)
            if on_retry is not None:
                on_retry(f"lock_timeout={settings.lock_timeout} hit{named}; retry {attempt} of {settings.lock_retries} in {wait:g}s")
            time.sleep(wait)


def upgrade(settings: Settings, target: str = "head", confirm: str | None = None, ask=None, on_retry: Callable[[str], None] | None = None) -> MigrateResult:
    """Upgrade the database to ``target`` (default: head), holding the migration lock.

    A protected database asks for confirmation, unless
    ``DBTASKS_UNATTENDED_UPGRADE=1`` (a container entrypoint). ``on_retry``
    gets one line per lock-timeout retry.
    """
    guard(settings, f"upgrade to {target}", confirm, ask, upgrade=True)
    try:
        before, after = _migrate(settings, lambda cfg: command.upgrade(cfg, target), on_retry, relative=target.startswith(("+", "-")))
    except MigrationError as exc:
        raise _blame(settings, exc) from None
    return MigrateResult(before, after, _between(settings, before, after))


def _blame(settings: Settings, exc: MigrationError) -> MigrationError:
    """A failed upgrade names the revision that failed and its file: the first one still pending."""
    prefix = "the migration failed: "
    if not exc.message.startswith(prefix):
        return exc
    try:
        pending = status(settings).pending
    except DbtasksError:
        return exc
    if not pending:
        return exc
    rev = pending[0]
    return MigrationError(
        f"the upgrade of {rev.revision} ({shown_path(rev.path)}) failed: {exc.message[len(prefix):]}",
        exc.remedy or "fix its upgrade(); the revisions before it stay applied",
    )


def downgrade(settings: Settings, steps: int | None = 1, target: str | None = None, confirm: str | None = None, ask=None, on_retry: Callable[[str], None] | None = None) -> MigrateResult:
    """Undo the last ``steps`` applied revisions, or every one above ``target`` (a revision or ``base``).

    The revisions are undone newest first, in the reverse of the order
    Alembic applies them, one step each, so a merge revision and the branches
    below it come apart without Alembic's "Ambiguous walk". The confirmation
    prompt of a protected database names them.
    """
    if target is None and (steps is None or steps < 1):
        raise UsageError(f"STEPS must be a positive number, not {steps!r}", f"e.g. {names.command('db-migrate-down', STEPS=1)}")
    plan = undo_plan(settings, steps, target)
    guard(settings, f"undo {len(plan)} revision(s) ({', '.join(r.revision for r in plan)}, newest first)", confirm, ask)
    before, after = _migrate(settings, lambda cfg: _undo(cfg, plan, target), on_retry)
    return MigrateResult(before, after, plan)


def undo_plan(settings: Settings, steps: int | None = 1, target: str | None = None) -> list[Revision]:
    """The applied revisions a downgrade undoes, newest first; a clear error when it cannot."""
    script = script_directory(settings)
    current = current_revisions(settings)
    if not current:
        raise NothingToDo("the database is at base already; nothing to downgrade")
    check_applied_known(settings, current, script)
    with translate_errors(settings):
        applied = list(script.iterate_revisions(current, "base"))  # newest first, each before its ancestors
        if target is None:
            if steps > len(applied):
                raise UsageError(
                    f"STEPS={steps} is more than the {len(applied)} revision(s) applied",
                    f"{names.run('db-migrate-down', STEPS=len(applied))} to undo them all, or {names.run('db-migrate-down-all')}",
                )
            return [Revision.from_script(s) for s in applied[:steps]]
        if target == "base":
            return [Revision.from_script(s) for s in applied]
        if target.startswith(("-", "+")) or target in ("head", "heads"):
            raise UsageError(f"TO={target} is not a revision", f"name a revision, or count steps: {names.command('db-migrate-down', STEPS=1)}")
        found = script.get_revision(target)
        if found is None or isinstance(found, tuple):
            raise UnknownRevision(f"unknown revision {target!r}", f"see `{names.command('db-migrate-history')}` for the known revisions")
        ids = {s.revision for s in applied}
        if found.revision not in ids:
            raise UsageError(
                f"TO={target} is not applied to the database (it is at {', '.join(current)})",
                f"pick an applied revision from `{names.command('db-migrate-history')}`",
            )
        keep = {s.revision for s in script.iterate_revisions(found.revision, "base")}
    plan = [Revision.from_script(s) for s in applied if s.revision not in keep]
    if not plan:
        raise NothingToDo(f"the database is at {target} already; nothing to downgrade")
    return plan


def _undo(cfg: Config, plan: list[Revision], target: str | None) -> None:
    """Run the downgrade steps of ``plan`` through env.py (only those still applied: a retry resumes)."""
    script = ScriptDirectory.from_config(cfg)

    def steps(rev, context):
        heads = [h for h in rev if h] if isinstance(rev, (tuple, list)) else ([rev] if rev else [])
        applied = {s.revision for s in script.iterate_revisions(heads, "base")} if heads else set()
        return [RevisionStep(script.revision_map, script.get_revision(r.revision), False) for r in plan if r.revision in applied]

    with EnvironmentContext(cfg, script, fn=steps, as_sql=False, destination_rev=target or (",".join(plan[-1].down_revision) or "base")):
        script.run_env()


def downgrade_all(settings: Settings, confirm: str | None = None, ask=None, on_retry: Callable[[str], None] | None = None) -> MigrateResult:
    """Downgrade to base: every migration undone (refused on protected databases without confirmation)."""
    return downgrade(settings, target="base", confirm=confirm, ask=ask, on_retry=on_retry)


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
    script = script_directory(settings)  # fail early on a bad alembic.ini
    with translate_errors(settings):
        if len(script.get_heads()) > 1:
            # Before "the database is not up to date": upgrading fails on two heads too.
            raise command_error("Multiple heads are present")
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
