"""Protection: the mark inside the database, the routes that reach it, confirmation.

Protection follows the database, not the name that reached it. A database is
protected when any of these holds:

1. it is *marked*: ``dbtasks protect`` (``make db-protect``) wrote the line
   ``dbtasks: protected (environment prod)`` into the database's comment
   (``COMMENT ON DATABASE``). The comment belongs to the database object on
   its server: every route (``ENV``, ``DATABASE_URL``, ``--database-url``,
   ``.env``) that connects to it sees it, ``pg_dump`` does not copy it into a
   local restore, and ``CREATE DATABASE ... TEMPLATE`` does not clone it.
   Other text of the comment is kept. ``\\l+`` in psql shows it;
2. it lives on a server that is not the project's own local or docker server
   (``DBTASKS_PG_HOST``:``DBTASKS_PG_PORT``), unless it is listed in
   ``dev_databases`` (``DBTASKS_DEV_DATABASES``);
3. it was reached through an environment listed in ``protected_envs``
   (``ENV=prod``), as before.

A destructive verb (:func:`guard`) on a protected database goes ahead only
when the user types the database name at a terminal or passes
``--confirm=<dbname>`` (make/just ``CONFIRM=<dbname>``). ``upgrade`` also
accepts ``DBTASKS_UNATTENDED_UPGRADE=1`` (forward migrations at container
start). Scratch databases never go to a protected database's server
(:func:`scratch_home`); ``db-shell`` opens a protected database read-only
unless asked (:func:`shell_mode`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from dbtasks import names
from dbtasks.config import Settings, parse_url
from dbtasks.database import connection, describe, quote_ident
from dbtasks.errors import DbtasksError, NothingToDo, ProtectedEnvironment, UsageError, redact

Ask = Callable[[str], str]

MARK = "dbtasks: protected"
_MARK_LINE = re.compile(r"^dbtasks: protected(?: \(environment (?P<env>[^)]*)\))?\s*$", re.M)
_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}


@dataclasses.dataclass
class Protection:
    """Why a database is protected (``reasons`` empty: it is not)."""

    database: str
    reasons: list[str]
    mark: str | None = None  # the environment named by the mark ("" when it names none); None: not marked
    reachable: bool = True  # False: the database did not answer, so its mark could not be read

    @property
    def protected(self) -> bool:
        return bool(self.reasons)

    @property
    def why(self) -> str:
        return self.reasons[0] if self.reasons else ""


# -- where a database lives -------------------------------------------------------


def _host(host: str | None) -> str:
    host = (host or "").strip().lower()
    return "localhost" if host in _LOCAL_HOSTS or host.startswith("/") else host


def same_server(a: URL, b: URL) -> bool:
    return (_host(a.host), a.port or 5432) == (_host(b.host), b.port or 5432)


def own_server_url(settings: Settings) -> URL:
    """The address of the project's own local or docker server."""
    return URL.create("postgresql+psycopg2", host=settings.pg_host, port=settings.pg_port, database=settings.db_name)


def own_server(settings: Settings, url: URL | None = None) -> bool:
    """True when ``url`` (default: the settings' database) is on the project's own local/docker server."""
    return same_server(url or settings.url, own_server_url(settings))


def listed_dev(settings: Settings, url: URL | None = None) -> bool:
    """True when ``url`` matches an entry of ``dev_databases`` (host, host:port, host:port/db; globs)."""
    url = url or settings.url
    hosts = {(url.host or "localhost").lower(), _host(url.host)}
    if _host(url.host) == "localhost":
        hosts |= {"127.0.0.1", "localhost"}
    port, db = url.port or 5432, url.database or ""
    candidates = set()
    for h in hosts:
        candidates |= {h, f"{h}:{port}", f"{h}:{port}/{db}", f"{h}/{db}"}

    def pattern(entry: str) -> str:  # host names are case-insensitive, database names are not
        server, slash, db_name = entry.strip().partition("/")
        return server.lower() + slash + db_name

    return any(fnmatch.fnmatchcase(c, pattern(entry)) for entry in settings.dev_databases for c in candidates)


# -- the mark -----------------------------------------------------------------------


def _comment(conn: sa.Connection) -> str | None:
    return conn.execute(sa.text(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = current_database()"
    )).scalar()


def read_mark(conn: sa.Connection) -> str | None:
    """The environment the database's mark names ("" for none), or None when it is not marked."""
    match = _MARK_LINE.search(_comment(conn) or "")
    if match is None:
        return None
    return match.group("env") or ""


def _set_comment(conn: sa.Connection, text: str | None, settings: Settings, verb: str) -> None:
    name = conn.execute(sa.text("select current_database()")).scalar()
    sql = f"COMMENT ON DATABASE {quote_ident(name)} IS " + ("NULL" if not text else "'" + text.replace("'", "''") + "'")
    try:
        conn.execute(sa.text(sql))
    except DBAPIError as exc:
        first = redact(str(exc.orig).strip().splitlines()[0]) if str(exc.orig).strip() else type(exc).__name__
        user = settings.url.username or "this user"
        raise ProtectedEnvironment(
            f"cannot {verb} database {name!r} on {describe(settings.url)} as {user}: {first}",
            "connect as the database's owner or a superuser (the mark is the database's comment)",
        ) from None


def protect(settings: Settings, environment: str | None = None) -> Protection:
    """Mark the settings' database protected, naming ``environment`` (default: ``--env``); idempotent."""
    environment = (environment or settings.env or "").strip()
    if environment and not re.fullmatch(r"[\w.-]+", environment):
        raise UsageError(f"environment name {environment!r} may hold only letters, digits, '.', '-' and '_'")
    line = MARK + (f" (environment {environment})" if environment else "")
    with connection(settings, autocommit=True) as conn:
        comment = _comment(conn) or ""
        rest = _MARK_LINE.sub("", comment).strip("\n")
        _set_comment(conn, (rest + "\n" + line) if rest else line, settings, "mark protected")
    return protection(settings)


def unprotect(settings: Settings, confirm: str | None = None, ask: Ask | None = None) -> str:
    """Remove the mark; always needs the database name typed or ``--confirm=<dbname>``. Returns the old mark."""
    dbname = settings.database_name
    with connection(settings, autocommit=True) as conn:
        mark = read_mark(conn)
        if mark is None:
            raise NothingToDo(f"database {dbname!r} on {describe(settings.url)} carries no protection mark; nothing to remove")
        _confirm(settings, "remove the protection mark", f"database {dbname!r} marked protected", confirm, ask)
        rest = _MARK_LINE.sub("", _comment(conn) or "").strip("\n")
        _set_comment(conn, rest or None, settings, "unmark")
    return mark


def carry_mark(url: URL, mark: str | None) -> None:
    """Write ``mark`` onto the database at ``url`` (a restore swapped a new database in for a marked one)."""
    if mark is None:
        return
    from dbtasks.database import connect

    line = MARK + (f" (environment {mark})" if mark else "")
    with connect(url, autocommit=True) as conn:
        conn.execute(sa.text(f"COMMENT ON DATABASE {quote_ident(url.database)} IS '" + line.replace("'", "''") + "'"))


# -- the decision -------------------------------------------------------------------


def protection(settings: Settings, conn: sa.Connection | None = None) -> Protection:
    """Why the settings' database is protected, reading the mark on the database itself.

    A database that cannot be reached carries no readable mark; the other
    reasons still hold (and the verb itself then fails to connect).
    """
    reasons: list[str] = []
    if settings.is_protected:
        reasons.append(f"protected environment {settings.env!r}")
    mark = None
    reachable = True
    if conn is not None:
        mark = read_mark(conn)
    else:
        try:
            with connection(settings) as c:
                mark = read_mark(c)
        except DbtasksError:
            reachable = False
    dbname = settings.database_name
    if mark is not None:
        reasons.append(f"database {dbname!r} marked protected" + (f" ({mark})" if mark else ""))
    if not own_server(settings) and not listed_dev(settings):
        reasons.append(f"database {dbname!r} on {describe(settings.url).split('@', 1)[-1].rsplit('/', 1)[0]}, a server that is not the project's own")
    return Protection(dbname, reasons, mark, reachable)


def _confirm_hint(dbname: str) -> str:
    return f"CONFIRM={dbname}" if names.runner() in ("make", "just") else f"--confirm={dbname}"


def _confirm(settings: Settings, action: str, why: str, confirm: str | None, ask: Ask | None) -> None:
    dbname = settings.database_name
    if confirm is not None:
        if confirm == dbname:
            return
        raise ProtectedEnvironment(f"--confirm={confirm!r} does not match the database {dbname!r} ({why})", f"pass {_confirm_hint(dbname)}")
    if ask is not None:
        typed = ask(f"{action} on {why}: type the database name ({dbname}) to go on")
        if typed.strip() == dbname:
            return
        raise ProtectedEnvironment(f"confirmation did not match {dbname!r}; nothing was done")
    raise ProtectedEnvironment(
        f"refusing to {action} without confirmation: {why}",
        f"run it in a terminal and type the database name, or pass {_confirm_hint(dbname)}",
    )


def guard(settings: Settings, action: str, confirm: str | None = None, ask: Ask | None = None, *, upgrade: bool = False) -> Protection:
    """Return when ``action`` may go ahead on the settings' database, else raise.

    ``ask`` is called with a prompt and returns what the user typed; the CLI
    passes one only when standard input is a terminal. ``upgrade`` marks a
    forward migration, which ``DBTASKS_UNATTENDED_UPGRADE=1`` lets through.
    """
    p = protection(settings)
    if not p.protected:
        return p
    if upgrade and settings.unattended_upgrade:
        return p
    _confirm(settings, action, p.why, confirm, ask)
    return p


def confirm_unmasked(settings: Settings, source: str, confirm: str | None = None, ask: Ask | None = None) -> None:
    """MASK=0 with masking rules: production rows would arrive unmasked; the local database's name must be typed or given."""
    _confirm(settings, f"copy {source}'s rows unmasked ({names.given('MASK=0', '--no-mask')}) into {settings.database_name!r}", "a developer database", confirm, ask)


def require_own_server(settings: Settings, action: str) -> None:
    """Refuse ``action`` (volume-recreate) unless it targets the project's own local or docker server."""
    if settings.server_kind not in ("local", "docker"):
        raise ProtectedEnvironment(
            f"refusing to {action}: cannot recreate {describe(settings.url)}, which is not on the project's own local or docker server",
            "volume-recreate only ever acts on the server dbtasks runs (DB_SERVER=local or docker, no DATABASE_URL/ENV)",
        )
    if not own_server(settings):
        raise ProtectedEnvironment(
            f"refusing to {action}: DB_SERVER={settings.server_kind} but the database URL points at {describe(settings.url)}, not at the project's own server {settings.pg_host}:{settings.pg_port}",
            "volume-recreate only ever acts on the server dbtasks runs; drop DATABASE_URL/ENV",
        )


# -- scratch databases and shells ----------------------------------------------------


def scratch_home(settings: Settings, why: str = "scratch databases") -> Settings:
    """Settings whose server may hold scratch databases for work on ``settings``' database.

    The settings themselves when the target is not protected; otherwise the
    server of ``TEST_DATABASE_URL``, else the project's own local server,
    started if needed. Never the server of a protected target.
    """
    p = protection(settings)
    if not p.protected or not p.reachable:
        # A target that does not answer gets nothing anywhere: the scratch step reports it in one line.
        return settings
    test_url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if test_url:
        url = parse_url(test_url, "TEST_DATABASE_URL")
        home = settings.with_(database_url=url.render_as_string(hide_password=False), env=None, db_server="external")
    else:
        kind = settings.db_server if settings.sources.get("db_server") not in ("default", None) and settings.db_server in ("local", "docker") else "local"
        home = settings.with_(database_url=None, env=None, db_server=kind)
    if same_server(home.url, settings.url):
        raise ProtectedEnvironment(
            f"{why} would go to the server of {p.why}",
            "set TEST_DATABASE_URL to another server's maintenance database",
        )
    if not test_url:
        from dbtasks import server

        server.start_db(home)
    return home


def shell_mode(settings: Settings, write: bool = False, confirm: str | None = None, ask: Ask | None = None) -> tuple[bool, str | None]:
    """(read_only, banner) of ``db-shell``: read-only on a protected database unless ``write`` and confirmed."""
    p = protection(settings)
    if not p.protected:
        return False, None
    if not write:
        return True, (
            f"read-only: {p.why} (default_transaction_read_only=on); "
            f"to write, {names.run('db-shell', WRITE=1)} and confirm with the database name"
        )
    _confirm(settings, "open a writable shell", p.why, confirm, ask)
    return False, f"WRITABLE shell on {p.why}"
