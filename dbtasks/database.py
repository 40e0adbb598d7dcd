"""The one door to the database: settings -> connection, scratch databases, driver errors.

:func:`connection` turns settings into a connection to the database they
name; :func:`scratch` gives a throwaway database on the same server. Every
connection dbtasks opens goes through :func:`connect` underneath, so a server
that is down, a wrong password or a missing database always becomes the same
clear, password-free :class:`~dbtasks.errors.DbtasksError`, whose remedy names
the command this user has (:mod:`dbtasks.names`).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from dbtasks import names
from dbtasks.config import Settings, environment
from dbtasks.errors import (
    AuthenticationFailed,
    ConfigError,
    read_text,
    DatabaseNotRunning,
    DbtasksError,
    ServerError,
    redact,
)

CONNECT_TIMEOUT = 5


class DatabaseMissing(ServerError):
    """The server answers, but the database the URL names does not exist (``create-db`` makes it)."""


class ForeignServer(ServerError):
    """In local mode, the server on the configured port is not this project's cluster."""


# The mark a local cluster carries in its postgresql.conf: the project it belongs to
# (a custom setting, readable by any role over any connection).
PROJECT_MARK = "dbtasks.project"


def describe(url: URL) -> str:
    """``user@host:port/db`` with no password, for messages."""
    return f"{url.username or ''}@{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def make_engine(url: URL, **kwargs) -> Engine:
    """An engine without pooling: dbtasks opens few connections and must not leak them.

    dbtasks itself always talks through psycopg2, whatever driver the project's
    URL names (``postgresql+asyncpg://`` is for the project's own async code).
    """
    connect_args = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "dbtasks"}
    connect_args.update(kwargs.pop("connect_args", {}))
    return sa.create_engine(url.set(drivername="postgresql+psycopg2"), poolclass=NullPool, connect_args=connect_args, **kwargs)


def start_hint(settings: Settings) -> str | None:
    """What to tell a user whose database does not answer: start the server dbtasks manages."""
    return names.run("start-db") if settings.server_kind != "external" else None


def translate(exc: BaseException, url: URL, hint: str | None = None, origin: str = "DATABASE_URL") -> DbtasksError:
    """Turn a driver error into a one-line error that says what to do (``hint``: how to start the server)."""
    text = str(getattr(exc, "orig", None) or exc)
    where = describe(url)
    start = hint
    hint = hint or f"check that the server is running and {origin} is right"
    if "password authentication failed" in text or "no password supplied" in text:
        return AuthenticationFailed(
            f"password authentication failed for {where}",
            f"check the password in {origin}",
        )
    if re.search(r'database "[^"]+" does not exist', text):
        if origin.endswith("_DATABASE_URL"):  # an environment's database (a source, a deploy target): not ours to create
            return DatabaseMissing(f"database {url.database!r} does not exist on {where}", f"fix {origin} (it names a database the server does not have)")
        return DatabaseMissing(f"database {url.database!r} does not exist on {where}", start or f"{names.run('create-db')}, or fix {origin}")
    if re.search(r'role "[^"]+" does not exist', text):
        return AuthenticationFailed(f"role {url.username!r} does not exist on {where}", f"fix the user in {origin}")
    if "invalid response to SSL negotiation" in text or "expected authentication request" in text or "unsupported frontend protocol" in text:
        return ServerError(
            f"the program answering at {url.host or 'localhost'}:{url.port or 5432} is not a PostgreSQL server",
            f"fix the port in {origin}, or stop that program" + (f" and {start}" if start else ""),
        )
    if any(s in text for s in ("Connection refused", "could not connect", "timeout expired", "No such file or directory", "could not translate host name", "the database system is starting up", "the database system is shutting down")):
        return DatabaseNotRunning(f"cannot connect to the database at {where}", hint)
    first = redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return ServerError(f"database error at {where}: {first}")


def session_options(settings: Settings) -> str:
    """libpq ``options`` for every session dbtasks opens or lets env.py open: lock_timeout, statement_timeout.

    The same text goes into ``PGOPTIONS`` while a project's env.py runs
    (:func:`session_environment`), so even an env.py that builds its own engine
    from ``sqlalchemy.url`` or ``DATABASE_URL`` gets the timeouts: libpq reads
    ``PGOPTIONS`` for every psycopg2 connection that sets no options itself.
    """
    parts = [f"-c lock_timeout={settings.lock_timeout}"]
    if settings.statement_timeout:
        parts.append(f"-c statement_timeout={settings.statement_timeout}")
    return " ".join(parts)


@contextlib.contextmanager
def session_environment(settings: Settings) -> Iterator[str]:
    """``PGOPTIONS`` of this process set to :func:`session_options` (after the caller's own) while the block runs."""
    import os

    before = os.environ.get("PGOPTIONS")
    options = ((before + " ") if before else "") + session_options(settings)
    with environment(PGOPTIONS=options):
        yield options


@contextlib.contextmanager
def connect(url: URL, hint: str | None = None, autocommit: bool = False, origin: str = "DATABASE_URL", options: str | None = None) -> Iterator[Connection]:
    """Open one connection to ``url``; driver errors at connect time become clear errors."""
    extra = {"connect_args": {"options": options}} if options else {}
    engine = make_engine(url, isolation_level="AUTOCOMMIT", **extra) if autocommit else make_engine(url, **extra)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise translate(exc, url, hint, origin) from None
        with conn:
            yield conn
    finally:
        engine.dispose()


@contextlib.contextmanager
def connection(settings: Settings, autocommit: bool = False) -> Iterator[Connection]:
    """The door: one connection to the database the settings name.

    A database that does not answer gets the remedy this user can run
    (``make start-db``, ``just start-db`` or ``dbtasks start-db``), or, for an
    external server, a pointer at the variable that named it. In local mode
    the server must be this project's own cluster (:func:`check_local_owner`).
    """
    stack = contextlib.ExitStack()
    try:
        conn = stack.enter_context(connect(settings.url, start_hint(settings), autocommit, settings.url_origin, session_options(settings)))
    except DatabaseMissing:
        # Another project's server lacks this project's database: say whose server it is, not "start-db".
        if local_mode(settings):
            try:
                with connect(admin_url(settings.url)) as admin:
                    check_local_owner(settings, admin)
            except ForeignServer:
                raise
            except DbtasksError:
                pass
        raise
    with stack:
        check_local_owner(settings, conn)
        yield conn


def local_mode(settings: Settings) -> bool:
    """True when the settings name the project's own local cluster (no DATABASE_URL, no ENV)."""
    return settings.server_kind == "local" and not settings.database_url


# (host, port, project) whose server was found to be the project's own, once per process.
_OWNED: set[tuple[str, int, str]] = set()


def pg_port_remedy(settings: Settings) -> str:
    """How to give this project another port: the variable, the key, and the derived default."""
    from dbtasks.config import derived_port

    own = derived_port(settings.project_dir)
    tail = f" (unset, it is {own}, derived from this project's path)" if own != settings.pg_port else ""
    return f"set DBTASKS_PG_PORT or pg_port in [tool.dbtasks] to another port{tail}"


def served_project(conn: Connection) -> str:
    """The project root a dbtasks local cluster is marked with (its ``dbtasks.project`` setting); "" when unmarked."""
    return conn.execute(sa.text("select current_setting(:m, true)"), {"m": PROJECT_MARK}).scalar() or ""


def check_local_owner(settings: Settings, conn: Connection) -> None:
    """In local mode, refuse a server on the configured port that is not this project's cluster.

    Each local cluster carries :data:`PROJECT_MARK` (the project directory)
    in its postgresql.conf, so one query tells whose it is: another
    project's cluster, or a server dbtasks did not make (no mark), is refused
    in one line, naming start-db, which marks this project's own running
    cluster (one made by an older dbtasks, or whose clone moved). Asked once
    per process and port.
    """
    if not local_mode(settings):
        return
    project = str(settings.project_dir)
    key = (settings.pg_host, settings.pg_port, project)
    if key in _OWNED:
        return
    mark = served_project(conn)
    if conn.in_transaction():
        conn.rollback()  # leave the connection as the caller expects it: no transaction begun
    if mark != project:
        # Only start-db, which reads this project's own pid file, may (re)mark a cluster:
        # one made by a dbtasks before the mark, or whose clone moved, is marked there.
        where = f"port {settings.pg_port} on {settings.pg_host}"
        own = f"; if it is this project's own server (made by an older dbtasks, or the clone moved), {names.run('start-db')} once marks it"
        if mark:
            raise ForeignServer(f"{where} is served by the local server of another project ({mark}), not this one", pg_port_remedy(settings) + own)
        raise ForeignServer(
            f"{where} is served by a PostgreSQL server that is not marked as this project's local cluster",
            pg_port_remedy(settings) + ", or set DATABASE_URL to use that server" + own,
        )
    _OWNED.add(key)


@contextlib.contextmanager
def advisory_lock(conn: Connection, key: int, wait: bool = True) -> Iterator[bool]:
    """Hold session advisory lock ``key`` on ``conn``; yields False when ``wait`` is off and it is taken.

    The lock is a session lock, committed at once, so it outlives the
    transactions run under it; it is released on exit (and dies with the
    connection if the process is killed).
    """
    if wait:
        # Waiting for another process's turn is not a table lock: lock_timeout does not apply.
        conn.execute(sa.text("select set_config('lock_timeout', '0', true)"))
        conn.execute(sa.text("select pg_advisory_lock(:k)"), {"k": key})
        got = True
    else:
        got = bool(conn.execute(sa.text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar())
    if conn.in_transaction():
        conn.commit()
    try:
        yield got
    finally:
        if got:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(sa.text("select pg_advisory_unlock(:k)"), {"k": key})
            if conn.in_transaction():
                conn.commit()


def admin_url(url: URL, database: str = "postgres") -> URL:
    """The same server and user, connected to a maintenance database."""
    return url.set(database=database)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def database_exists(url: URL, name: str | None = None) -> bool:
    name = name or url.database
    with connect(admin_url(url), autocommit=True) as conn:
        return bool(conn.execute(sa.text("select 1 from pg_database where datname = :n"), {"n": name}).scalar())


def create_database(url: URL, name: str, template: str | None = None, owner: str | None = None) -> URL:
    """Create database ``name`` on the server of ``url`` and return its URL."""
    sql = f"CREATE DATABASE {quote_ident(name)}"
    if template:
        sql += f" TEMPLATE {quote_ident(template)}"
    if owner:
        sql += f" OWNER {quote_ident(owner)}"
    with connect(admin_url(url), autocommit=True) as conn:
        conn.execute(sa.text(sql))
    return url.set(database=name)


def drop_database(url: URL, name: str) -> None:
    """Drop ``name`` if it exists, disconnecting its sessions first."""
    with connect(admin_url(url), autocommit=True) as conn:
        conn.execute(
            sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :n and pid <> pg_backend_pid()"),
            {"n": name},
        )
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote_ident(name)}"))


def scratch_name(prefix: str = "dbtasks_scratch") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def scratch(settings: Settings, template: str | None = None, prefix: str = "dbtasks_scratch", why: str = "") -> Iterator[URL]:
    """A throwaway database on the server of the settings' database, dropped on exit whatever happens.

    A role that may not create databases gets one line saying so (``why``
    names the verb that needed one).
    """
    url = settings.url
    name = scratch_name(prefix)
    with connect(admin_url(url), start_hint(settings), origin=settings.url_origin) as conn:
        check_local_owner(settings, conn)  # a server that does not answer fails above, with the start hint
    try:
        scratch = create_database(url, name, template=template)
    except DBAPIError as exc:
        first = redact(str(exc.orig).strip().splitlines()[0]) if str(exc.orig).strip() else type(exc).__name__
        raise ServerError(
            f"cannot create a scratch database on {describe(admin_url(url))}: {first}",
            (f"{why}: " if why else "") + "use a role with CREATEDB (ALTER ROLE ... CREATEDB)",
        ) from None
    try:
        prepare_scratch(settings, scratch)
        yield scratch
    finally:
        drop_database(url, name)


def prepare_scratch(settings: Settings, url: URL) -> None:
    """Run the ``scratch_setup`` SQL file on a new scratch database (what the history expects but does not create).

    A history whose first revision expects tables, schemas or roles made
    outside Alembic (by hand long ago, by another service) cannot replay on an
    empty database; the file creates them first.
    """
    if not settings.scratch_setup:
        return
    path = settings.path(settings.scratch_setup)
    sql = read_text(path)
    try:
        with connect(url, autocommit=True) as conn:
            conn.exec_driver_sql(sql)
    except DBAPIError as exc:
        first = redact(str(exc.orig).strip().splitlines()[0]) if str(exc.orig).strip() else type(exc).__name__
        raise ConfigError(f"scratch_setup {path} failed on the scratch database: {first}", "fix the SQL file (DBTASKS_SCRATCH_SETUP)") from None


def server_version(url: URL) -> int:
    """The server's ``server_version_num`` (e.g. 160002)."""
    with connect(url) as conn:
        return int(conn.execute(sa.text("show server_version_num")).scalar())
