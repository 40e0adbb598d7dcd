"""pytest plugin: a real PostgreSQL for tests, a migrated template, one clone per test.

Installed with dbtasks (entry point ``pytest11``), it offers:

- ``dbtasks_server_url`` (session): the URL of a server's maintenance database.
  ``TEST_DATABASE_URL`` when set; otherwise a throwaway cluster started through
  :mod:`dbtasks.server` in a temporary directory on a free port, removed at the end.
- ``dbtasks_template`` (session): a database migrated to head with the
  project's alembic.ini, built once.
- ``dbtasks_database`` (function): a fresh clone of that template per test
  (``CREATE DATABASE ... TEMPLATE``, much faster than migrating again).
- ``empty_database`` (function): a fresh empty database per test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy.engine import URL

from dbtasks.config import load_settings, parse_url, environment
from dbtasks.database import create_database, drop_database, prepare_scratch, scratch_name


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
    """A database migrated to head with the project's alembic.ini, built once per session."""
    from dbtasks import migrations

    name = scratch_name("dbtasks_template")
    url = create_database(dbtasks_server_url, name)
    try:
        settings = load_settings()
        prepare_scratch(settings, url)
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
