"""``dump-db``: pg_dump in custom or directory format, and reading an archive back.

The dump is written to ``<name>.partial-<pid>`` and renamed when pg_dump
succeeded, so a file without that suffix is always complete. Partial files
left by a killed run (their process is gone) are removed by the next dump.

Next to each dump, ``<name>.meta.json`` records every dumped table's size in
the source (heap + TOAST bytes, row estimate): the restore's progress is
measured against it (see :class:`dbtasks.data.tools.CopyWatch`). A dump
without one (made by hand) restores the same, its progress without an ETA.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

from dbtasks import names
from dbtasks.config import Settings
from dbtasks.clients import available_clients, find_client, first_error, run_client
from dbtasks.database import connection, describe, session_options
from dbtasks.data.tools import (
    CopyWatch,
    DataError,
    DumpFileError,
    ProgressCallback,
    TableSize,
    ensure_tool_dir,
    pause_point,
    server_major,
    table_sizes,
    write_meta,
)
from dbtasks.server import pid_alive
from dbtasks.errors import UsageError

FORMATS = {"custom": ("c", ".dump"), "directory": ("d", ".dir")}


@dataclasses.dataclass
class DumpResult:
    """What ``dump-db`` wrote."""

    path: Path
    format: str
    size: int
    server_version: str
    pg_dump: str
    tables: int
    excluded: tuple[str, ...]
    revision: str | None
    seconds: float
    data_bytes: int | None = None  # the dumped tables' size in the source (heap + TOAST)


@dataclasses.dataclass
class ArchiveInfo:
    """The header and table of contents of a pg_dump archive."""

    path: Path
    format: str
    dumped_from: str
    dumped_by: str
    entries: list[str]

    @property
    def from_major(self) -> int:
        return int(re.match(r"\d+", self.dumped_from).group(0)) if re.match(r"\d+", self.dumped_from) else 0

    @property
    def by_major(self) -> int:
        return int(re.match(r"\d+", self.dumped_by).group(0)) if re.match(r"\d+", self.dumped_by) else 0

    @property
    def data_entries(self) -> list[str]:
        return [e for e in self.entries if " TABLE DATA " in e]


# -- helpers ------------------------------------------------------------------------


# Dump and backup names end in the UTC time, ISO 8601 basic format, to the
# microsecond: app-local-20261121T201500.123456Z.dump. Names written before the
# microseconds (app-local-20261121T201500Z.dump) are still recognised.
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
_STAMP = r"(?P<stamp>\d{8}T\d{6}(?:\.\d{6})?Z)"


def timestamp(now: datetime | None = None) -> str:
    """``now`` (default: the current UTC time) as a name stamp, e.g. ``20261121T201500.123456Z``."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime(STAMP_FORMAT)


def stamp_time(stamp: str) -> datetime:
    """The UTC time of a name stamp, with or without microseconds."""
    return datetime.strptime(stamp, STAMP_FORMAT if "." in stamp else "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _stamped(directory: Path, prefix: str, partials: bool) -> list[tuple[datetime, str, Path]]:
    if not directory.is_dir():
        return []
    tail = r"(?:\.partial-\d+)?" if partials else ""
    pattern = re.compile(rf"^{re.escape(prefix)}-{_STAMP}(?:\.dump|\.dir){tail}$")
    return sorted((stamp_time(m.group("stamp")), p.name, p) for p in directory.iterdir() if (m := pattern.match(p.name)))


def stamped_files(directory: Path, prefix: str) -> list[Path]:
    """The finished ``<prefix>-<stamp>.dump`` and ``.dir`` entries of ``directory``, oldest first by their stamp."""
    return [p for _, _, p in _stamped(directory, prefix, partials=False)]


def stamped_path(directory: Path, prefix: str, suffix: str) -> Path:
    """A new ``<directory>/<prefix>-<UTC time><suffix>`` that sorts after every stamped entry there.

    The stamp is the current time, or one microsecond after the newest stamp
    already in ``directory`` (finished or still being written) when that is not
    older: two runs in the same second never collide, and a clock set back
    never makes the new file look older than the ones before it.
    """
    when = datetime.now(timezone.utc)
    taken = _stamped(directory, prefix, partials=True)
    if taken:
        when = max(when, taken[-1][0] + timedelta(microseconds=1))
    return directory / f"{prefix}-{timestamp(when)}{suffix}"


def remove_stale_partials(directory: Path) -> list[Path]:
    """Delete ``*.partial-<pid>`` files and directories whose writer is gone."""
    removed = []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = re.search(r"\.partial-(\d+)(?:\.meta\.json)?$", path.name)
        if match and not pid_alive(int(match.group(1))):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def disk_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def env_label(settings: Settings) -> str:
    return settings.env or ("local" if settings.server_kind != "external" else "db")


def source_facts(settings: Settings) -> tuple[int, str, int]:
    """(server_version_num, server_version, number of tables) of the source database."""
    with connection(settings) as conn:
        num = int(conn.execute(sa.text("show server_version_num")).scalar())
        version = str(conn.execute(sa.text("show server_version")).scalar())
        tables = int(conn.execute(sa.text(
            "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
            "where c.relkind in ('r', 'm') and n.nspname not in ('pg_catalog', 'information_schema') "
            "and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'"
        )).scalar())
    return num, version, tables


def source_sizes(settings: Settings, excluded: tuple[str, ...] = ()) -> dict[str, TableSize]:
    """Each table's data size in the source, leaving out the tables whose rows the dump leaves out."""
    with connection(settings) as conn:
        return table_sizes(conn, excluded)


# -- dump ---------------------------------------------------------------------------


def dump_db(
    settings: Settings,
    output: str | Path | None = None,
    fmt: str | None = None,
    jobs: int | None = None,
    exclude_data: tuple[str, ...] | None = None,
    compress: int | None = None,
    progress: ProgressCallback | None = None,
    meta: bool = True,
) -> DumpResult:
    """Dump the database of ``settings`` with pg_dump; returns where and what.

    ``fmt`` is ``custom`` (one compressed file) or ``directory`` (one file per
    table, dumped by ``jobs`` parallel workers). Rows of tables matching
    ``exclude_data`` patterns (pg_dump ``--exclude-table-data``) are left out,
    their definitions kept. pg_dump is chosen with a major version at least the
    server's. With ``meta``, ``<dump>.meta.json`` records the dumped tables'
    sizes for the restore's progress.
    """
    fmt = fmt or settings.dump_format
    if fmt not in FORMATS:
        raise UsageError(f"unknown dump format {fmt!r}", "use custom or directory")
    jobs = jobs or settings.dump_jobs
    compress = settings.dump_compress if compress is None else compress
    if not 0 <= compress <= 9:
        raise UsageError(f"compression level {compress} is out of range", "use 0 (none) to 9 (smallest)")
    excluded = tuple(settings.dump_exclude_data if exclude_data is None else exclude_data)

    version_num, version, tables = source_facts(settings)
    sizes = source_sizes(settings, excluded)
    major = server_major(version_num)
    pg_dump = find_client("pg_dump", settings.pg_bin, min_major=major, prefer=major, why=f"the server at {describe(settings.url)} runs PostgreSQL {version}")

    letter, suffix = FORMATS[fmt]
    if output is None:
        directory = ensure_tool_dir(settings.path(settings.dump_dir))
        final = stamped_path(directory, f"{settings.database_name}-{env_label(settings)}", suffix)
    else:
        final = Path(output).expanduser()
        if not final.is_absolute():
            final = Path.cwd() / final
        ensure_tool_dir(final.parent)
        if final.exists():
            raise UsageError(f"{final} already exists", "choose another file name or remove it")
    if not os.access(final.parent, os.W_OK):
        raise DataError(f"cannot write to {final.parent} (read-only)", "choose a writable directory with FILE= (-o) or DBTASKS_DUMP_DIR")
    remove_stale_partials(final.parent)
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")

    args = [pg_dump.path, f"--format={letter}", f"--file={partial}", "--verbose", f"--compress={compress}"]
    if fmt == "directory" and jobs > 1:
        args.append(f"--jobs={jobs}")
    for pattern in excluded:
        args.append(f"--exclude-table-data={pattern}")

    started = time.monotonic()
    # Progress in bytes of table data: pg_dump's sessions are the source's "pg_dump" ones.
    watch = CopyWatch(progress, "dump", settings.url, sizes, app="pg_dump", options=session_options(settings))

    def on_line(line: str) -> None:
        watch.line(line)
        if "dumping contents of table" in line and len(watch.started) == 1:
            pause_point("dump-running")

    try:
        with watch:
            code, lines = run_client(args, settings.url, on_line)
            if code != 0:
                raise DataError(f"pg_dump failed on {describe(settings.url)}: {first_error(lines, 'pg_dump')}")
            watch.finish()
        partial.rename(final)
    except BaseException:
        # Cleaning up must not hide pg_dump's own error (a read-only directory fails both).
        with contextlib.suppress(OSError):
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            else:
                partial.unlink(missing_ok=True)
        raise
    dumped = {name: sizes[name] for name in sorted(set(watch.started) | watch.seen) if name in sizes}
    if meta:
        with contextlib.suppress(OSError):  # a hint for the restore's progress, never a reason to fail
            write_meta(final, settings.database_name, version, dumped)
    revision = None
    try:
        revision = archive_revision(final, settings.pg_bin)
    except DataError:
        pass
    data_bytes = sum(s.bytes for s in dumped.values())
    return DumpResult(final, fmt, disk_size(final), version, pg_dump.version, tables, excluded, revision, time.monotonic() - started, data_bytes)


# -- reading an archive --------------------------------------------------------------


def _reader(pg_bin: str | None):
    """The newest pg_restore: it reads archives of every older pg_dump."""
    clients = available_clients("pg_restore", pg_bin)
    if not clients:
        return find_client("pg_restore", pg_bin)
    return max(clients, key=lambda c: c.major)


def check_archive_path(path: str | Path | None) -> Path:
    if path is None or str(path).strip() == "":
        raise UsageError("no dump file given", f"e.g. `{names.command('restore-db', FILE='path/to/file.dump')}`")
    p = Path(path).expanduser()
    if not p.exists():
        raise DumpFileError(f"dump file {p} does not exist", f"check the path; `{names.command('dump-db')}` writes dumps to dumps/")
    if not p.is_dir() and not p.is_file():
        # pg_restore would block on a FIFO forever, waiting for a writer.
        raise DumpFileError(f"{p} is not a regular file (a pipe, socket or device)", "write the dump to a file first and pass that file")
    if p.is_dir() and not (p / "toc.dat").is_file():
        raise DumpFileError(f"{p} is a directory but not a pg_dump directory archive (no toc.dat)", "pass a file written by `dbtasks dump-db`")
    return p


def read_archive(path: str | Path, pg_bin: str | None = None) -> ArchiveInfo:
    """Header and table of contents of an archive (``pg_restore --list``), or a clear error."""
    p = check_archive_path(path)
    reader = _reader(pg_bin)
    proc = subprocess.run([reader.path, "--list", str(p)], capture_output=True, text=True, errors="replace", env={**os.environ, "LC_MESSAGES": "C"})
    if proc.returncode != 0:
        reason = first_error(proc.stderr.splitlines(), "pg_restore")
        if "unsupported version" in reason:
            raise DumpFileError(
                f"{p} was written by a pg_dump newer than any installed pg_restore ({reason})",
                "install a newer PostgreSQL client or set PG_BIN to its bin directory",
            )
        raise DumpFileError(f"{p} is not a readable pg_dump archive ({reason})", f"it may be truncated or corrupt; make a fresh dump with `{names.command('dump-db')}`")

    def header(key: str) -> str:
        match = re.search(rf"^;\s+{re.escape(key)}:\s*(.+)$", proc.stdout, re.M)
        return match.group(1).strip() if match else ""

    entries = [line for line in proc.stdout.splitlines() if line and not line.startswith(";")]
    return ArchiveInfo(p, header("Format"), header("Dumped from database version"), header("Dumped by pg_dump version"), entries)


def archive_revision(path: str | Path, pg_bin: str | None = None) -> str | None:
    """The alembic revision stored in the archive's ``alembic_version`` rows, if any."""
    p = check_archive_path(path)
    reader = _reader(pg_bin)
    proc = subprocess.run(
        [reader.path, "--data-only", "--table=alembic_version", "--file=-", str(p)],
        capture_output=True, text=True, errors="replace", env={**os.environ, "LC_MESSAGES": "C"},
    )
    if proc.returncode != 0:
        raise DumpFileError(f"cannot read {p} ({first_error(proc.stderr.splitlines(), 'pg_restore')})")
    revisions: list[str] = []
    in_copy = False
    for line in proc.stdout.splitlines():
        if line.startswith("COPY ") and "alembic_version" in line:
            in_copy = True
            continue
        if in_copy:
            if line == "\\.":
                break
            if line.strip():
                revisions.append(line.strip())
    if not revisions:
        return None
    return ",".join(sorted(revisions))
