"""pytest plugin: a real PostgreSQL for tests, a migrated template, one clone per test.

Installed with dbtasks (entry point ``pytest11``), it offers:

- ``dbtasks_server_url`` (session): the URL of a server's maintenance database.
  ``TEST_DATABASE_URL`` when set; otherwise a throwaway cluster started through
  :mod:`dbtasks.server` in a temporary directory on a free port, removed at the end.
- ``dbtasks_template`` (session): a database at head with the project's
  alembic.ini, built once: loaded from docs/database/schema.sql when it is
  current (``DBTASKS_SCHEMA_LOAD=never`` replays instead), else migrated.
- ``dbtasks_database`` (function): a fresh clone of that template per test
  (``CREATE DATABASE ... TEMPLATE``, much faster than migrating again).
- ``empty_database`` (function): a fresh empty database per test.
- ``dbtasks_connection`` (function): a connection to one clone of the template
  per session (per xdist worker), inside a transaction rolled back after each
  test: per test, no database is created.
- ``dbtasks_session`` (function): an ORM session on that connection whose
  ``commit()`` releases a savepoint (``join_transaction_mode="create_savepoint"``),
  so code that commits can be tested without leaking rows into the next test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from dbtasks.config import load_settings, parse_url, environment
from dbtasks.database import connect, create_database, drop_database, prepare_scratch, scratch_name

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_server(pg_bin: str | None = None, base_dir: str | None = None) -> Iterator[URL]:
    """Start a disposable local cluster; yield its maintenance-database URL."""
    from dbtasks.server import LocalServer

    root = Path(tempfile.mkdtemp(prefix="dbtasks-pg-", dir=base_dir))
    root.chmod(0o755)  # the server may run as another OS user (we may be root)
    settings = load_settings(
        {"db_server": "local", "pg_data": str(root / "pgdata"), "pg_port": free_port(), "db_name": "postgres"},
        project_dir=root,
        environ={k: v for k, v in os.environ.items() if k == "PG_BIN"} if pg_bin is None else {"PG_BIN": pg_bin},
    )
    server = LocalServer(settings)
    try:
        server.start()
        # A throwaway server's data dies with it: it need not survive a power loss, so it
        # skips the flushes a developer's cluster keeps (dbtasks.server.LOCAL_TUNING).
        with connect(settings.url, autocommit=True) as conn:
            for name in ("fsync", "full_page_writes"):
                conn.execute(sa.text(f"ALTER SYSTEM SET {name} = off"))
            conn.execute(sa.text("select pg_reload_conf()"))
        yield settings.url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def given_or_throwaway(url: str | None, origin: str = "TEST_DATABASE_URL") -> Iterator[URL]:
    """The server at ``url`` when one is given, else a throwaway cluster (tests, benchmarks)."""
    if url:
        yield parse_url(url, origin)
        return
    with throwaway_server() as started:
        yield started


def dev_server_entry(url: URL) -> str:
    """The ``DBTASKS_DEV_DATABASES`` entry that lists every database of ``url``'s server."""
    return f"{url.host or 'localhost'}:{url.port or 5432}"


@pytest.fixture(scope="session")
def dbtasks_server_url() -> Iterator[URL]:
    """Maintenance URL of the test server (TEST_DATABASE_URL or a throwaway cluster).

    The test server is a development server by definition: it is added to
    ``DBTASKS_DEV_DATABASES`` of this process for the session, so its
    databases are not protected unless a test marks one (``dbtasks protect``).
    """
    with given_or_throwaway(os.environ.get("TEST_DATABASE_URL")) as url:
        before = os.environ.get("DBTASKS_DEV_DATABASES")
        with environment(DBTASKS_DEV_DATABASES=",".join(filter(None, [before, dev_server_entry(url)]))):
            yield url


@pytest.fixture(scope="session")
def dbtasks_template(dbtasks_server_url: URL) -> Iterator[URL]:
    """A database at head with the project's alembic.ini, built once per session.

    Built from the checked-in schema.sql when it is current (``schema_load =
    auto``, the default), else by replaying the migrations.
    """
    from dbtasks import migrations, schema_load

    name = scratch_name("dbtasks_template")
    url = create_database(dbtasks_server_url, name)
    try:
        settings = load_settings()
        prepare_scratch(settings, url)
        fresh = schema_load.should_load(settings, url)  # schema_load = auto and schema.sql current: load it
        if fresh is not None:
            schema_load.load_scratch(settings, url, fresh)
        else:
            migrations.upgrade_scratch(settings, url)
        yield url
    finally:
        drop_database(dbtasks_server_url, name)


@pytest.fixture
def dbtasks_database(dbtasks_server_url: URL, dbtasks_template: URL) -> Iterator[URL]:
    """A fresh clone of the migrated template, dropped after the test."""
    name = scratch_name("dbtasks_test")
    url = create_database(dbtasks_server_url, name, template=dbtasks_template.database)
    try:
        yield url
    finally:
        drop_database(dbtasks_server_url, name)


@pytest.fixture
def empty_database(dbtasks_server_url: URL) -> Iterator[URL]:
    """A fresh empty database, dropped after the test."""
    name = scratch_name("dbtasks_test")
    url = create_database(dbtasks_server_url, name)
    try:
        yield url
    finally:
        drop_database(dbtasks_server_url, name)


# -- per-test transactions: one clone per session, one rolled-back transaction per test --------


@contextlib.contextmanager
def clone(server_url: URL, template: URL, prefix: str = "dbtasks_test") -> Iterator[URL]:
    """A fresh ``CREATE DATABASE ... TEMPLATE`` clone of ``template``, dropped on exit (what ``dbtasks_database`` costs per test)."""
    name = scratch_name(prefix)
    url = create_database(server_url, name, template=template.database)
    try:
        yield url
    finally:
        drop_database(server_url, name)


class SharedClone:
    """One clone of the template per session (per xdist worker) and one open connection to it.

    The template itself cannot be used: PostgreSQL refuses ``CREATE DATABASE
    ... TEMPLATE`` while anyone is connected to it, and ``dbtasks_database``
    clones it per test.
    """

    def __init__(self, server_url: URL, template: URL):
        self.server_url, self.template = server_url, template
        self._stack = contextlib.ExitStack()
        self.connection: Connection | None = None
        self.reset()

    def reset(self) -> None:
        """A new clone and connection (after a test committed on the shared connection)."""
        from dbtasks.database import make_engine

        self.close()
        self._stack = contextlib.ExitStack()
        self.url = self._stack.enter_context(clone(self.server_url, self.template, "dbtasks_txn"))
        engine = make_engine(self.url)
        self._stack.callback(engine.dispose)
        self.connection = self._stack.enter_context(engine.connect())

    def close(self) -> None:
        self._stack.close()
        self.connection = None


class CommittedOnSharedConnection(AssertionError):
    """A test called ``commit()`` on ``dbtasks_connection``: its rows would have leaked into the next test."""


@contextlib.contextmanager
def rolled_back(connection: Connection) -> Iterator[Connection]:
    """Run the body inside a transaction on ``connection`` that is rolled back on exit.

    Raises :class:`CommittedOnSharedConnection` on exit when the body called
    ``connection.commit()`` (the outer transaction was committed, not a
    savepoint); ``dbtasks_connection`` then rebuilds its database.
    """
    from sqlalchemy import event

    committed: list[bool] = []

    def on_commit(conn: Connection) -> None:
        committed.append(True)

    transaction = connection.begin()
    event.listen(connection, "commit", on_commit)
    try:
        yield connection
    finally:
        event.remove(connection, "commit", on_commit)
        if transaction.is_active:
            transaction.rollback()
        if connection.in_transaction():  # autobegun after a commit or rollback in the body
            connection.rollback()
    if committed:
        raise CommittedOnSharedConnection(
            "the test called commit() on dbtasks_connection, which commits the outer transaction and leaks its rows: "
            "use dbtasks_session (its commit() releases a savepoint), `with connection.begin_nested():`, "
            "or the dbtasks_database fixture for a test that must really commit"
        )


@pytest.fixture(scope="session")
def _dbtasks_shared_clone(dbtasks_server_url: URL, dbtasks_template: URL) -> Iterator[SharedClone]:
    shared = SharedClone(dbtasks_server_url, dbtasks_template)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def dbtasks_connection(_dbtasks_shared_clone: SharedClone) -> Iterator[Connection]:
    """A connection to a database at head, inside a transaction rolled back after the test.

    Much cheaper per test than ``dbtasks_database`` (no database is created):
    one clone of the template per session (per xdist worker) and one
    connection; each test runs in a transaction that is rolled back, so what
    it writes is gone for the next test. Write through ``dbtasks_session`` (or
    ``Session(bind=dbtasks_connection, join_transaction_mode="create_savepoint")``)
    so the code under test may ``commit()``: its commits release savepoints.
    Tests that run DDL that must persist, open their own connections (other
    threads or processes cannot see the open transaction) or must really
    commit use ``dbtasks_database``.
    """
    shared = _dbtasks_shared_clone
    if shared.connection is None or shared.connection.closed or shared.connection.invalidated:
        shared.reset()  # an earlier test closed it, or the server dropped it
    try:
        with rolled_back(shared.connection) as connection:
            yield connection
    except CommittedOnSharedConnection:
        shared.reset()  # the rows are in the database now: the next test gets a fresh clone
        raise


@pytest.fixture
def dbtasks_session(dbtasks_connection: Connection) -> Iterator["Session"]:
    """A SQLAlchemy ORM session on ``dbtasks_connection``: ``commit()`` releases a savepoint, everything is rolled back after the test."""
    from sqlalchemy.orm import Session

    session = Session(bind=dbtasks_connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.close()
