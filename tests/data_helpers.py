"""Helpers of the data-workflow tests (tests/test_data_*.py): fingerprints, seeding, databases."""

from __future__ import annotations

import os
import shutil
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


class Forked:
    """The CLI in a process forked from this one, as tests.conftest.run runs it (no new
    interpreter to start), with the parts of subprocess.Popen that run_until_paused and kill use."""

    def __init__(self, args, cwd: Path, **extra: str):
        import importlib
        import tempfile

        from .conftest import _child

        importlib.import_module("dbtasks.cli")  # imported once, before forking
        env = clean_env(**extra)
        self.args = ["dbtasks", *args]
        self.returncode: int | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="dbtasks-forked-"))
        self._paths = [self._dir / name for name in ("stdin", "stdout", "stderr")]
        self._paths[0].write_text("")
        self._output: tuple[str, str] | None = None
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child
            _child(list(args), cwd, env, self._paths)

    def _reap(self, flags: int) -> None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)

    def poll(self) -> int | None:
        self._reap(os.WNOHANG)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)

    def communicate(self) -> tuple[str, str]:
        self._reap(0)
        if self._output is None:
            self._output = (self._paths[1].read_text(errors="replace"), self._paths[2].read_text(errors="replace"))
            shutil.rmtree(self._dir, ignore_errors=True)
        return self._output


def spawn(args, cwd: Path, **extra: str):
    """Start the CLI without waiting: forked (see Forked), or the installed program with DBTASKS_TEST_EXEC=1."""
    if os.environ.get("DBTASKS_TEST_EXEC"):
        return popen(args, cwd, **extra)
    return Forked(args, cwd, **extra)


def run_until_paused(args, cwd: Path, stage: str, marker: Path, timeout: float = 120, **extra: str) -> subprocess.Popen:
    """Start the CLI (see spawn) with the test pause hook at ``stage``; return once it waits there."""
    proc = spawn(args, cwd, DBTASKS_TEST_PAUSE_AT=stage, DBTASKS_TEST_PAUSE_FILE=str(marker), **extra)
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
    "remote_available", "new_database", "popen", "spawn", "run_until_paused", "kill", "drop_database",
]
