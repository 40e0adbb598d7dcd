"""PostgreSQL client programs for the data verbs: which one, how to run it, progress.

pg_dump refuses a server newer than itself, and pg_restore cannot read an
archive written by a newer pg_dump, so :func:`find_client` looks at every
installation it can find (``PG_BIN``, ``pg_config --bindir``,
``/usr/lib/postgresql/*/bin``, the pgserver wheel, ``PATH``) and picks one whose
major version is high enough, preferring the server's own version.

Client programs get the password through ``PGPASSWORD`` in their environment
(:func:`dbtasks.database.libpq_environment`), never on their command line, and
every line they print goes through :func:`~dbtasks.errors.redact`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from sqlalchemy.engine import URL

from dbtasks.database import client_environment  # noqa: F401  (re-exported)
from dbtasks.errors import ConfigError, DbtasksError, redact


class DataError(DbtasksError):
    """A dump, restore, backup, backfill or cleanup could not go on."""


class DumpFileError(DataError):
    """The dump file is missing, unreadable or not a pg_dump archive."""


class ClientVersionError(DataError):
    """No installed pg_dump/pg_restore can handle this server or archive."""


# -- progress -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` ``unit`` in ``stage``.

    ``total`` is None when unknown. The CLI draws one bar per stage.
    """

    stage: str
    done: int
    total: int | None = None
    unit: str = "items"
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def report(progress: ProgressCallback | None, stage: str, done: int, total: int | None = None, unit: str = "items", detail: str = "") -> None:
    if progress is not None:
        progress(Progress(stage, done, total, unit, detail))


# -- test hook ------------------------------------------------------------------


def pause_point(stage: str) -> None:
    """Test-only hook: wait at ``stage`` when ``DBTASKS_TEST_PAUSE_AT`` names it.

    The reliability tests set ``DBTASKS_TEST_PAUSE_AT=<stage>`` and
    ``DBTASKS_TEST_PAUSE_FILE=<path>``; on reaching the stage the process writes
    the path and sleeps, so the test can SIGKILL it at a known point. Unset, this
    does nothing.
    """
    if os.environ.get("DBTASKS_TEST_PAUSE_AT") != stage:
        return
    marker = os.environ.get("DBTASKS_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {stage}\n")
    time.sleep(float(os.environ.get("DBTASKS_TEST_PAUSE_SECONDS", "600")))


# -- finding client programs ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Client:
    """One client program and its major version."""

    path: str
    major: int
    version: str


def _candidate_dirs(pg_bin: str | None) -> list[Path]:
    from dbtasks.server import pgserver_bin_dir

    dirs: list[Path] = []
    if pg_bin:
        dirs.append(Path(pg_bin).expanduser())
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
            if out:
                dirs.append(Path(out))
        except (OSError, subprocess.SubprocessError):
            pass
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin")))
    dirs.extend(Path(p) for p in sorted(glob.glob("/usr/pgsql-*/bin")))
    dirs.extend(Path(p) for p in sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin")))
    bundled = pgserver_bin_dir()
    if bundled:
        dirs.append(bundled)
    for name in ("pg_dump", "psql"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).resolve().parent)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


@functools.lru_cache(maxsize=None)
def _version_of(path: str) -> tuple[int, str] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"\)\s*(\d+)(?:\.(\d+))?", out) or re.search(r"(\d+)\.(\d+)", out)
    if not match:
        return None
    return int(match.group(1)), match.group(0).lstrip(") ").strip()


def available_clients(name: str, pg_bin: str | None = None) -> list[Client]:
    """Every installed ``name`` (pg_dump, pg_restore, psql) with its version."""
    clients: list[Client] = []
    for d in _candidate_dirs(pg_bin):
        path = d / name
        if path.is_file() and os.access(path, os.X_OK):
            version = _version_of(str(path))
            if version and all(c.path != str(path) for c in clients):
                clients.append(Client(str(path), version[0], version[1]))
    return clients


def find_client(name: str, pg_bin: str | None = None, min_major: int = 0, prefer: int | None = None, why: str = "") -> Client:
    """A ``name`` whose major version is at least ``min_major``.

    ``prefer`` (the server's major version) wins when available; otherwise the
    lowest sufficient version, which is the least likely to emit settings an
    older server does not know.
    """
    clients = available_clients(name, pg_bin)
    ok = [c for c in clients if c.major >= min_major]
    if not ok:
        have = ", ".join(sorted({f"{c.major}" for c in clients})) or "none"
        raise ClientVersionError(
            f"no {name} of PostgreSQL {min_major} or newer is installed{(' (' + why + ')') if why else ''}; found versions: {have}",
            f"install the PostgreSQL {min_major} client (Debian: apt-get install postgresql-client-{min_major}) or set PG_BIN to its bin directory",
        )
    ok.sort(key=lambda c: (c.major != prefer, c.major))
    return ok[0]


# -- running them -------------------------------------------------------------------


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM when dbtasks dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _has_prctl() -> bool:
    return os.uname().sysname == "Linux"


def run_client(
    args: Sequence[str],
    url: URL | None,
    on_line: Callable[[str], None] | None = None,
    stdout=None,
    stdin=None,
) -> tuple[int, list[str]]:
    """Run a client program; feed each stderr line to ``on_line``; return (code, stderr lines).

    The program dies with us (so a killed restore leaves no writer behind).
    """
    proc = subprocess.Popen(
        [str(a) for a in args],
        env=client_environment(url),
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        preexec_fn=_die_with_parent if _has_prctl() else None,
    )
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            line = redact(line.rstrip("\n"))
            lines.append(line)
            if len(lines) > 2000:
                del lines[:1000]
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return code, lines


def first_error(lines: Iterable[str], program: str) -> str:
    """The most telling line a client program printed."""
    lines = [l for l in lines if l.strip()]
    for line in lines:
        if "error:" in line or "FATAL" in line or "fatal" in line:
            text = line
            break
    else:
        text = lines[-1] if lines else "no output"
    text = re.sub(rf"^{re.escape(program)}:\s*", "", text.strip())
    text = re.sub(r"^(error|fatal):\s*", "", text)
    return redact(text)


def server_major(version_num: int) -> int:
    return version_num // 10000


def ensure_tool_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path} ({exc.strerror})", "choose a writable directory") from None
    return path
