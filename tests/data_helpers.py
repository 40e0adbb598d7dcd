"""Helpers of the data-workflow tests (tests/test_data_*.py): fingerprints, seeding, databases."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks.config import load_settings
from dbtasks.database import admin_url, create_database, drop_database, make_engine, scratch_name
from dbtasks.server import port_in_use

from .conftest import DBTASKS, REPO, clean_env, url_str

REMOTE = URL.create("postgresql+psycopg2", username="postgres", host="127.0.0.1", port=5432, database="postgres")


def settings_for(url: URL, project: Path = REPO, **values):
    # The test server is a development server (see dbtasks.testing.dbtasks_server_url).
    values.setdefault("dev_databases", [f"{url.host}:{url.port}"])
    return load_settings({"database_url": url_str(url), **values}, project_dir=project, environ={})


def seed(url: URL) -> None:
    from dbtasks.data.seed import seed as run_seed

    run_seed(settings_for(url))


def execute(url: URL, *statements: str, params: dict | None = None) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql), params or {})
    finally:
        engine.dispose()


def rows(url: URL, sql: str, params: dict | None = None) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params or {})]
    finally:
        engine.dispose()


def fingerprint(url: URL) -> dict[str, tuple]:
    """Row count and an md5 of every row of every user table, and every sequence's position."""
    engine = make_engine(url)
    result: dict[str, tuple] = {}
    try:
        with engine.connect() as conn:
            tables = conn.execute(sa.text(
                "select quote_ident(schemaname) || '.' || quote_ident(tablename) from pg_tables "
                "where schemaname not in ('pg_catalog', 'information_schema') order by 1"
            )).scalars().all()
            for table in tables:
                count, digest = conn.execute(sa.text(
                    f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {table} t"
                )).one()
                result[table] = (count, digest)
            for seq in conn.execute(sa.text(
                "select quote_ident(schemaname) || '.' || quote_ident(sequencename) from pg_sequences order by 1"
            )).scalars():
                result["seq " + seq] = tuple(conn.execute(sa.text(f"select last_value, is_called from {seq}")).one())
    finally:
        engine.dispose()
    return result


def database_names(url: URL) -> set[str]:
    return {r[0] for r in rows(admin_url(url), "select datname from pg_database")}


def leftover_names(url: URL) -> set[str]:
    return {n for n in database_names(url) if n.startswith(("dbtasks_restore_", "dbtasks_old_"))}


def remote_available() -> bool:
    if not port_in_use("127.0.0.1", 5432):
        return False
    try:
        rows(REMOTE, "select 1")
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


def new_database(server: URL, prefix: str = "dbtasks_test") -> URL:
    return create_database(server, scratch_name(prefix), None)


def popen(args, cwd: Path, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([DBTASKS, *args], cwd=cwd, env=clean_env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_until_paused(args, cwd: Path, stage: str, marker: Path, timeout: float = 120, **extra: str) -> subprocess.Popen:
    """Start the CLI with the test pause hook at ``stage``; return once it waits there."""
    proc = popen(args, cwd, DBTASKS_TEST_PAUSE_AT=stage, DBTASKS_TEST_PAUSE_FILE=str(marker), **extra)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the command ended before reaching {stage}: {proc.returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the command did not reach {stage}")
        time.sleep(0.05)
    return proc


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


__all__ = [
    "REMOTE", "settings_for", "seed", "execute", "rows", "fingerprint", "database_names", "leftover_names",
    "remote_available", "new_database", "popen", "run_until_paused", "kill", "drop_database",
]
