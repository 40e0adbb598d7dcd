"""Shared helpers. The database fixtures come from the dbtasks pytest plugin
(dbtasks/testing.py): a real PostgreSQL, never SQLite, never mocked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks.database import make_engine

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DBTASKS = str(BIN / "dbtasks")
JUST = str(BIN / "just")
PROJECT_FILES = ["alembic.ini", "alembic", "app", "pyproject.toml", "Makefile", "justfile", "docker-compose.yml", "scripts"]


# -- scheduling under pytest-xdist ----------------------------------------------------
# The suite's time is mostly subprocesses and servers; with `-n 2` the wall time
# is the busier worker's. Long tests (marked slow) run first and an idle worker
# takes queued tests from the other, so neither is left with a long test at the end.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow first, every other test in its usual order."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the warm dbtasks of run_make and run_just (tests/forkserver.py), if this process started one."""
    from .forkserver import stop

    stop()


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Work stealing in place of xdist's default ``load`` mode (fixed chunks); any other --dist mode is kept."""
    if config.getvalue("dist") == "load":
        from xdist.scheduler import WorkStealingScheduling

        return WorkStealingScheduling(config, log)
    return None


def url_str(url: URL) -> str:
    return url.render_as_string(hide_password=False)


# `make test` exports DBTASKS_RUNNER=make (the Makefile does, for its recipes): the suite's own
# process is no recipe, so remedies computed in-process name what the test sets up, not make.
os.environ.pop("DBTASKS_RUNNER", None)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a subprocess, without any database setting of the caller.

    ``DBTASKS_DEV_DATABASES`` stays: the plugin lists the test server there (its
    databases are development databases); pass ``DBTASKS_DEV_DATABASES=""`` to
    see a server as "not the project's own".
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k == "DBTASKS_DEV_DATABASES" or not (k.startswith(("DBTASKS_", "PG")) or k.endswith("DATABASE_URL") or k in {"DB_SERVER", "MIGRATE_MSG", "CHANGE", "STEPS", "ENV", "CONFIRM", "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE"})
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


# sys.path as a fresh `dbtasks` process has it (the child of a fork starts from this).
BASE_SYS_PATH = list(sys.path)
_LIBRARY_DIRS = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix, str(REPO / "dbtasks")})


def run(args, cwd: Path, input: str | None = None, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    """Run the dbtasks CLI in ``cwd``, as its own process.

    The process is forked from this one, which has dbtasks, SQLAlchemy and
    Alembic imported already, instead of starting a new interpreter (most of
    the suite's time otherwise). The child forgets every module of the
    projects under test and this process's sys.path changes, gets its own
    environment, directory and standard streams, runs the real entry point and
    exits with its code: what the `dbtasks` program does. Set
    ``DBTASKS_TEST_EXEC=1`` to run the installed program instead.
    """
    env = clean_env(**extra)
    if os.environ.get("DBTASKS_TEST_EXEC"):
        return subprocess.run([DBTASKS, *args], cwd=cwd, env=env, capture_output=True, text=True, input=input, timeout=timeout)
    import dbtasks.cli  # noqa: F401  (imported once, before forking)

    with tempfile.TemporaryDirectory(prefix="dbtasks-run-") as tmp:
        paths = [Path(tmp) / name for name in ("stdin", "stdout", "stderr")]
        paths[0].write_text(input or "")
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            _child(list(args), cwd, env, paths)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise subprocess.TimeoutExpired(["dbtasks", *args], timeout)
            time.sleep(0.005)
        code = os.waitstatus_to_exitcode(status)
        return subprocess.CompletedProcess(["dbtasks", *args], code, paths[1].read_text(errors="replace"), paths[2].read_text(errors="replace"))


def _child(args: list[str], cwd: Path, env: dict[str, str], paths: list[Path] | None = None, fds: list[int] | None = None) -> None:  # pragma: no cover
    """Run the CLI in this forked process with stdin, stdout, stderr from ``paths`` (or the descriptors ``fds``); never returns."""
    code = 1
    try:
        import logging

        if fds is not None:
            for target, fd in zip((0, 1, 2), fds):
                os.dup2(fd, target)
        else:
            write = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            for fd, path, mode in ((0, paths[0], os.O_RDONLY), (1, paths[1], write), (2, paths[2], write)):
                opened = os.open(path, mode, 0o600)
                os.dup2(opened, fd)
                os.close(opened)
        sys.stdin = open(0, "r", closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.path[:] = BASE_SYS_PATH
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if file and not file.startswith(_LIBRARY_DIRS):
                del sys.modules[name]  # the projects' models, env.py helpers, the tests themselves
        # The projects' mapped classes live on in SQLAlchemy's registries (a
        # gc.collect() here would free them, but walks this process's whole heap:
        # ~45 ms of page copies per run); forget them instead, so a project's
        # models never meet another project's in the child.
        if "sqlalchemy.orm" in sys.modules:
            sys.modules["sqlalchemy.orm"].clear_mappers()
        logging.root.handlers.clear()
        from dbtasks.cli import main

        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report as a crashed process would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def recipe_program() -> str:
    """The dbtasks that make and just run: the installed program with DBTASKS_TEST_EXEC=1,
    else a client of a warm process of this session (tests/forkserver.py)."""
    if os.environ.get("DBTASKS_TEST_EXEC"):
        return DBTASKS
    from .forkserver import program

    return program()


def run_make(target: str, cwd: Path, *assignments: str, input: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", target, f"DBTASKS={recipe_program()}", *assignments],
        cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, input=input, timeout=300,
    )


def run_just(args, cwd: Path, input: str | None = None, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [JUST, f"dbtasks={recipe_program()}", *args],
        cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, input=input, timeout=300,
    )


def scalar(url: URL, sql: str):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def tables(url: URL) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """A bad input: exit code, one line on stderr, no traceback, each needle present."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in proc.stdout, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("INFO ", "make:", "error: Recipe", "error: recipe `"))]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def copy_project(dest: Path) -> Path:
    """A copy of the example project, so tests can write revisions freely."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    # The copies include the recipes dbtasks ships from the kit itself (no dbtasks/ directory in
    # the copy, which would shadow the package for `python -m dbtasks`).
    share = REPO / "dbtasks" / "share"
    for name, old in (("Makefile", "$(dir $(lastword $(MAKEFILE_LIST)))dbtasks/share/"), ("justfile", "'dbtasks/share/")):
        text = (dest / name).read_text()
        assert old in text, name
        (dest / name).write_text(text.replace(old, f"{share}/" if name == "Makefile" else f"'{share}/"))
    # A stand-in venv marker so `make init` does not reinstall into the test's venv.
    (dest / ".venv").mkdir(exist_ok=True)
    (dest / ".venv" / ".installed").touch()
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "project")


@pytest.fixture
def reachable_dir():
    """A directory an unprivileged server user can enter (pytest's tmp is 0700 for root)."""
    path = Path(tempfile.mkdtemp(prefix="dbtasks-srv-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def local_env(data: Path, port: int, **extra: str) -> dict[str, str]:
    """Settings of a local cluster kept in ``data``/pgdata on ``port``."""
    return {"DB_SERVER": "local", "DBTASKS_PG_DATA": str(data / "pgdata"), "DBTASKS_PG_PORT": str(port), **extra}


@pytest.fixture
def db_env(empty_database: URL) -> dict[str, str]:
    """Environment that points dbtasks at a fresh, empty database."""
    return {"DATABASE_URL": url_str(empty_database)}
