"""Running a project's env.py against a database dbtasks chose, and only that database.

Checks, the schema docs and the test template run the project's own env.py
(so its ``target_metadata``, ``include_object``, plugins and schema options
apply as in production) against a *scratch* database. Teams write env.py in
many ways, and all of them must work without touching any other database:

- **The connection dbtasks hands over.** ``config.attributes["connection"]``
  holds an open SQLAlchemy ``Connection``. Alembic's cookbook passes it to
  ``context.configure(connection=...)``; pytest-alembic's documented pattern
  calls ``connectable.connect()`` on it first. :func:`handed` makes the same
  object work both ways: ``.connect()`` yields the connection itself and
  leaves it open for dbtasks.
- **A URL of its own.** env.py files that build an engine from
  ``sqlalchemy.url``, from ``DATABASE_URL``, from ``PG*`` variables or from
  variables of their own, or that hard-code a URL, or that open a plain
  psycopg2/psycopg/asyncpg connection: while env.py runs, ``sqlalchemy.url``,
  ``DATABASE_URL`` and the libpq ``PG*`` variables name the scratch database,
  and :func:`sandbox` redirects every connection the psycopg2, psycopg and
  asyncpg drivers open to it, whatever they were asked for. A redirect is
  recorded and reported as a note naming what env.py asked for.
- **The tripwire.** Any other network connection env.py makes from Python
  (another driver, a raw socket) to an address that is not the scratch
  server stops the command with one line naming the address and the fix
  (:class:`EnvPyLeak`); the run counts as failed. Hosts env.py may legitimately
  reach (a secrets service) are listed in ``envpy_allowed_hosts``.
- **Async env.py** (``async_engine_from_config`` with ``postgresql+asyncpg``)
  gets the scratch URL with its own driver, so it runs as written.
- **Logging.** env.py usually calls ``fileConfig(alembic.ini)``, whose INFO
  lines would bury the findings; while dbtasks runs it quietly, that call does
  nothing.

Known limit: a pure-Python driver other than asyncpg that connects to
*another database on the scratch server* is not redirected (the server
address is allowed); psycopg2, psycopg 3 and asyncpg, which SQLAlchemy and
Alembic projects use, are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging.config
import os
import socket
import sys
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote, urlparse

from sqlalchemy.engine import URL, Connection

from dbtasks.config import Settings, environment
from dbtasks.database import describe
from dbtasks.errors import DbtasksError

LIBPQ_VARIABLES = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGHOSTADDR")
# Options that only make sense for the database env.py asked for, not for the scratch one.
_DROPPED = {"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "service", "hostaddr", "passfile", "target_session_attrs", "ssl"}


class EnvPyLeak(DbtasksError):
    """env.py connected, or tried to, to a database other than the scratch one."""


def handed(conn: Connection) -> Connection:
    """``conn``, usable as a Connection and as something whose ``.connect()`` yields it, still open."""
    conn.connect = lambda *args, **kwargs: contextlib.nullcontext(conn)  # type: ignore[method-assign]
    return conn


def env_url(settings: Settings, url: URL) -> URL:
    """The scratch ``url`` spelled with the driver the project uses: that of DATABASE_URL, else of
    alembic.ini's ``sqlalchemy.url``, else asyncpg for an env.py that builds an async engine, else psycopg2."""
    driver = _driver_of(settings.database_url) or _project_driver(settings) or "postgresql+psycopg2"
    return url.set(drivername=driver)


ASYNC_MARKS = ("async_engine_from_config", "create_async_engine", "AsyncEngine")


def _driver_of(text: str | None) -> str | None:
    """``postgresql+<driver>`` of a URL, when it names one this process can load."""
    if not text or "://" not in text:
        return None
    scheme = text.strip().split("://", 1)[0].replace("postgres+", "postgresql+", 1)
    if not scheme.startswith("postgresql+"):
        return None
    module = {"postgresql+psycopg": "psycopg", "postgresql+asyncpg": "asyncpg", "postgresql+pg8000": "pg8000"}.get(scheme)
    if module is not None:
        import importlib.util

        if importlib.util.find_spec(module) is None:
            return None
    return scheme


def _project_driver(settings: Settings) -> str | None:
    """The driver of alembic.ini's own ``sqlalchemy.url``, or asyncpg when env.py builds an async engine
    (the ``alembic init -t async`` template): such an env.py cannot run on psycopg2."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    try:
        config = Config(str(settings.alembic_ini_path))
        driver = _driver_of(config.get_main_option("sqlalchemy.url"))
        if driver:
            return driver
        env_py = Path(ScriptDirectory.from_config(config).dir) / "env.py"
        text = env_py.read_text(encoding="utf-8") if env_py.is_file() else ""
    except Exception:  # noqa: BLE001 - a broken alembic.ini is reported by the command itself
        return None
    if any(mark in text for mark in ASYNC_MARKS):
        return _driver_of("postgresql+asyncpg://")
    return None


@dataclasses.dataclass
class Report:
    """What env.py did during one sandboxed run."""

    redirected: list[str] = dataclasses.field(default_factory=list)  # "user@host:port/db" env.py asked for
    leaks: list[str] = dataclasses.field(default_factory=list)  # addresses the tripwire stopped


def _target_of(host: Any, port: Any, dbname: Any) -> tuple[str, int, str]:
    host = str(host or os.environ.get("PGHOST") or "localhost")
    return host, int(port or os.environ.get("PGPORT") or 5432), str(dbname or os.environ.get("PGDATABASE") or "")


class _Sandbox:
    def __init__(self, url: URL, allowed_hosts: tuple[str, ...]):
        self.url = url
        self.report = Report()
        self.host = url.host or "localhost"
        self.port = int(url.port or 5432)
        self.allowed = {h.lower() for h in allowed_hosts}
        self._addresses = self._resolve(self.host)

    @staticmethod
    def _resolve(host: str) -> set[str]:
        names = {host.lower()}
        with contextlib.suppress(OSError):
            names |= {info[4][0] for info in socket.getaddrinfo(host, None)}
        if names & {"localhost", "127.0.0.1", "::1"}:
            names |= {"localhost", "127.0.0.1", "::1"}
        return names

    def is_scratch(self, host: str, port: int, dbname: str) -> bool:
        return port == self.port and dbname == self.url.database and (host.lower() in self._addresses or host.startswith("/"))

    def note_redirect(self, user: Any, host: str, port: int, dbname: str) -> None:
        asked = f"{user or ''}@{host}:{port}/{dbname}"
        if asked not in self.report.redirected:
            self.report.redirected.append(asked)

    # -- psycopg2 / psycopg 3 (libpq keyword arguments) ------------------------

    def libpq(self, original):
        sandbox = self

        def connect(dsn=None, *args, **kwargs):
            params: dict[str, Any] = {}
            if dsn:
                params.update(_parse_dsn(dsn))
            params.update(kwargs)
            if "database" in params and "dbname" not in params:
                params["dbname"] = params.pop("database")
            host, port, dbname = _target_of(params.get("host"), params.get("port"), params.get("dbname"))
            if not sandbox.is_scratch(host, port, dbname):
                sandbox.note_redirect(params.get("user"), host, port, dbname)
            kept = {k: v for k, v in params.items() if k not in _DROPPED and k not in ("host", "port", "dbname", "user", "password")}
            kept.update(host=sandbox.host, port=sandbox.port, dbname=sandbox.url.database, user=sandbox.url.username or "")
            if sandbox.url.password:
                kept["password"] = str(sandbox.url.password)
            return original(*args, **kept)

        return connect

    # -- asyncpg ---------------------------------------------------------------

    def asyncpg(self, original):
        sandbox = self

        def connect(dsn=None, *args, **kwargs):
            params: dict[str, Any] = {}
            if dsn:
                parsed = urlparse(dsn)
                params.update(host=parsed.hostname, port=parsed.port, database=unquote(parsed.path.lstrip("/")), user=parsed.username)
            params.update({k: v for k, v in kwargs.items() if v is not None})
            host, port, dbname = _target_of(params.get("host"), params.get("port"), params.get("database"))
            if not sandbox.is_scratch(host, port, dbname):
                sandbox.note_redirect(params.get("user"), host, port, dbname)
            kept = {k: v for k, v in kwargs.items() if k not in _DROPPED and k not in ("host", "port", "database", "user", "password", "dsn")}
            kept.update(host=sandbox.host, port=sandbox.port, database=sandbox.url.database, user=sandbox.url.username)
            if sandbox.url.password:
                kept["password"] = str(sandbox.url.password)
            return original(*args, **kept)

        return connect

    # -- the tripwire -----------------------------------------------------------

    def allows(self, address: Any, family: int) -> bool:
        if family == socket.AF_UNIX:
            path = str(address)
            return ".s.PGSQL." not in path or path.endswith(f".s.PGSQL.{self.port}")
        if not isinstance(address, tuple) or len(address) < 2:
            return True
        host, port = str(address[0]).lower(), int(address[1])
        if host in self.allowed or any(host in self._resolve(h) for h in self.allowed):
            return True
        return port == self.port and host in self._addresses

    def guard(self, original):
        sandbox = self

        def connect(sock, address, *args, **kwargs):
            if not sandbox.allows(address, sock.family):
                where = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
                if where not in sandbox.report.leaks:
                    sandbox.report.leaks.append(where)
                raise ConnectionRefusedError(f"dbtasks: env.py may only reach the scratch database, not {where}")
            return original(sock, address, *args, **kwargs)

        return connect


def _parse_dsn(dsn: str) -> dict[str, Any]:
    if "://" in dsn:
        parsed = urlparse(dsn)
        out = {"host": parsed.hostname, "port": parsed.port, "dbname": unquote(parsed.path.lstrip("/")), "user": parsed.username}
        return {k: v for k, v in out.items() if v}
    out = {}
    for part in dsn.split():
        key, _, value = part.partition("=")
        if key:
            out[key] = value.strip("'")
    return out


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    own = name in vars(target)
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        if own:
            setattr(target, name, original)
        else:
            delattr(target, name)  # it was inherited (socket.socket.connect)


@contextlib.contextmanager
def sandbox(settings: Settings, url: URL, quiet: bool = True) -> Iterator[Report]:
    """While the block runs, every connection env.py opens goes to ``url`` (see the module docstring)."""
    box = _Sandbox(url, settings.envpy_allowed_hosts)
    scratch_text = env_url(settings, url).render_as_string(hide_password=False)
    with contextlib.ExitStack() as stack:
        variables: dict[str, str | None] = dict.fromkeys(LIBPQ_VARIABLES)
        variables.update(
            DATABASE_URL=scratch_text, PGHOST=box.host, PGPORT=str(box.port), PGDATABASE=url.database or "",
            PGUSER=url.username or None, PGPASSWORD=str(url.password) if url.password else None,
        )
        stack.enter_context(environment(**variables))
        for module_name in ("psycopg2", "psycopg"):
            module = sys.modules.get(module_name) or _maybe_import(module_name)
            if module is not None:
                stack.enter_context(_patched(module, "connect", box.libpq(module.connect)))
        asyncpg = sys.modules.get("asyncpg") or _maybe_import("asyncpg")
        if asyncpg is not None:
            stack.enter_context(_patched(asyncpg, "connect", box.asyncpg(asyncpg.connect)))
        stack.enter_context(_patched(socket.socket, "connect", box.guard(socket.socket.connect)))
        stack.enter_context(_patched(socket.socket, "connect_ex", box.guard(socket.socket.connect_ex)))
        if quiet:
            stack.enter_context(_patched(logging.config, "fileConfig", lambda *args, **kwargs: None))
        try:
            yield box.report
        finally:
            if box.report.leaks:
                raise EnvPyLeak(
                    f"env.py tried to connect to {', '.join(box.report.leaks)} while dbtasks ran it on the scratch database {describe(url)}; it was stopped",
                    "make env.py use config.attributes['connection'] (or sqlalchemy.url) when dbtasks sets it, "
                    "or list a host it must reach (a secrets service) in envpy_allowed_hosts",
                )


def _maybe_import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None
