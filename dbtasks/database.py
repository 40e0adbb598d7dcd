"""Connections, scratch databases and the translation of driver errors.

Every connection dbtasks opens goes through :func:`connect`, so a server that is
down, a wrong password or a missing database always becomes the same clear,
password-free :class:`~dbtasks.errors.DbtasksError`.
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

from dbtasks.errors import (
    AuthenticationFailed,
    DatabaseNotRunning,
    DbtasksError,
    ServerError,
    redact,
)

CONNECT_TIMEOUT = 5


def describe(url: URL) -> str:
    """``user@host:port/db`` with no password, for messages."""
    return f"{url.username or ''}@{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def make_engine(url: URL, **kwargs) -> Engine:
    """An engine without pooling: dbtasks opens few connections and must not leak them."""
    connect_args = {"connect_timeout": CONNECT_TIMEOUT, "application_name": "dbtasks"}
    connect_args.update(kwargs.pop("connect_args", {}))
    return sa.create_engine(url, poolclass=NullPool, connect_args=connect_args, **kwargs)


def translate(exc: BaseException, url: URL, start_hint: str | None = None) -> DbtasksError:
    """Turn a driver error into a one-line error that says what to do."""
    text = str(getattr(exc, "orig", None) or exc)
    where = describe(url)
    hint = start_hint or "check that the server is running and DATABASE_URL is right"
    if "password authentication failed" in text or "no password supplied" in text:
        return AuthenticationFailed(
            f"password authentication failed for {where}",
            "check the password in DATABASE_URL (or the NAME_DATABASE_URL of --env)",
        )
    if re.search(r'database "[^"]+" does not exist', text):
        return ServerError(f"database {url.database!r} does not exist on {where}", start_hint or "create it, or fix DATABASE_URL")
    if re.search(r'role "[^"]+" does not exist', text):
        return AuthenticationFailed(f"role {url.username!r} does not exist on {where}", "fix the user in DATABASE_URL")
    if any(s in text for s in ("Connection refused", "could not connect", "timeout expired", "No such file or directory", "could not translate host name", "the database system is starting up", "the database system is shutting down")):
        return DatabaseNotRunning(f"cannot connect to the database at {where}", hint)
    first = redact(text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    return ServerError(f"database error at {where}: {first}")


@contextlib.contextmanager
def connect(url: URL, start_hint: str | None = None, autocommit: bool = False) -> Iterator[Connection]:
    """Open one connection; driver errors at connect time become clear errors."""
    engine = make_engine(url, isolation_level="AUTOCOMMIT") if autocommit else make_engine(url)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, DBAPIError) as exc:
            raise translate(exc, url, start_hint) from None
        with conn:
            yield conn
    finally:
        engine.dispose()


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
def scratch_database(
    url: URL, template: str | None = None, prefix: str = "dbtasks_scratch", start_hint: str | None = None, why: str = ""
) -> Iterator[URL]:
    """A throwaway database on the server of ``url``, dropped on exit whatever happens.

    A role that may not create databases gets one line saying so (``why``
    names the verb that needed one).
    """
    name = scratch_name(prefix)
    with connect(admin_url(url), start_hint):
        pass  # a server that does not answer fails here, with the start hint
    try:
        scratch = create_database(url, name, template=template)
    except DBAPIError as exc:
        first = redact(str(exc.orig).strip().splitlines()[0]) if str(exc.orig).strip() else type(exc).__name__
        raise ServerError(
            f"cannot create a scratch database on {describe(admin_url(url))}: {first}",
            (f"{why}: " if why else "") + "use a role with CREATEDB (ALTER ROLE ... CREATEDB)",
        ) from None
    try:
        yield scratch
    finally:
        drop_database(url, name)


def server_version(url: URL) -> int:
    """The server's ``server_version_num`` (e.g. 160002)."""
    with connect(url) as conn:
        return int(conn.execute(sa.text("show server_version_num")).scalar())


def libpq_environment(url: URL) -> dict[str, str]:
    """PG* variables for a client program: the password travels here, never in argv."""
    env = {
        "PGHOST": url.host or "localhost",
        "PGPORT": str(url.port or 5432),
        "PGDATABASE": url.database or "",
    }
    if url.username:
        env["PGUSER"] = url.username
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    for key, value in (url.query or {}).items():
        if key == "sslmode":
            env["PGSSLMODE"] = value if isinstance(value, str) else value[0]
    return env


def client_environment(url: URL | None) -> dict[str, str]:
    """Environment of a PostgreSQL client program: ours without the caller's PG*
    variables, plus the target's (the password travels here, never in argv)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    if url is not None:
        env.update(libpq_environment(url))
    return env


def shell(url: URL, psql: str, stdin=None) -> int:
    """Run psql on ``url``; it reads commands from stdin when that is not a terminal."""
    import subprocess
    import sys

    stream = stdin if stdin is not None else sys.stdin
    interactive = hasattr(stream, "isatty") and stream.isatty()
    # A script piped in should stop at its first error and ignore ~/.psqlrc.
    args = [psql] if interactive else [psql, "--no-psqlrc", "-v", "ON_ERROR_STOP=1"]
    return subprocess.run(args, env=client_environment(url), stdin=stdin).returncode
