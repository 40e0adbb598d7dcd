"""PostgreSQL client programs: finding pg_dump, pg_restore and psql, their environment, running them.

pg_dump refuses a server newer than itself, and pg_restore cannot read an
archive written by a newer pg_dump, so :func:`find_client` looks at every
installation it can find (``PG_BIN``, ``pg_config --bindir``,
``/usr/lib/postgresql/*/bin``, the pgserver wheel, ``PATH``) and picks one whose
major version is high enough, preferring the server's own version.

Client programs get the password through ``PGPASSWORD`` in their environment
(:func:`client_environment`), never on their command line, and every line
they print goes through :func:`~dbtasks.errors.redact`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence

from sqlalchemy.engine import URL

from dbtasks.config import Settings
from dbtasks.database import connection, session_options
from dbtasks.errors import DbtasksError, redact


class ClientVersionError(DbtasksError):
    """No installed pg_dump/pg_restore/psql can handle this server or archive."""


# -- where PostgreSQL is installed ---------------------------------------------------


def has_server_binaries(path: Path) -> bool:
    return (path / "pg_ctl").is_file() and (path / "postgres").is_file() and (path / "initdb").is_file()


def pgserver_bin_dir() -> Path | None:
    """The bin directory of the pgserver wheel's bundled PostgreSQL, if installed."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if has_server_binaries(path) else None


@functools.lru_cache(maxsize=None)
def pg_config_bindir() -> Path | None:
    """``pg_config --bindir`` of the pg_config on PATH, if any."""
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


# -- the environment of a client program ----------------------------------------------


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
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_MESSAGES"] = "C"
    if url is not None:
        env.update(libpq_environment(url))
    return env


def shell(settings: Settings, stdin=None, read_only: bool = False) -> int:
    """Run psql on the settings' database; it reads commands from stdin when that is not a terminal.

    The database is reached once first, so a server that is down gets dbtasks'
    one-line error with its remedy instead of psql's. ``read_only`` starts
    every transaction of the session read-only (``default_transaction_read_only``,
    through ``PGOPTIONS``); :func:`dbtasks.safety.shell_mode` decides it.
    """
    with connection(settings):
        pass
    psql = find_client("psql", settings.pg_bin).path
    stream = stdin if stdin is not None else sys.stdin
    interactive = hasattr(stream, "isatty") and stream.isatty()
    # A script piped in should stop at its first error and ignore ~/.psqlrc.
    args = [psql] if interactive else [psql, "--no-psqlrc", "-v", "ON_ERROR_STOP=1"]
    env = client_environment(settings.url)
    options = session_options(settings)
    if read_only:
        options += " -c default_transaction_read_only=on"
    env["PGOPTIONS"] = options.strip()
    return subprocess.run(args, env=env, stdin=stdin).returncode


# -- finding client programs ------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Client:
    """One client program and its major version."""

    path: str
    major: int
    version: str


def _candidate_dirs(pg_bin: str | None) -> list[Path]:
    dirs: list[Path] = []
    if pg_bin:
        dirs.append(Path(pg_bin).expanduser())
    configured = pg_config_bindir()
    if configured:
        dirs.append(configured)
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
