"""What the data verbs share: their errors, progress reports, fault injection, directories."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks.errors import ConfigError, DbtasksError


class DataError(DbtasksError):
    """A dump, restore, backup, backfill or cleanup could not go on."""


class DumpFileError(DataError):
    """The dump file is missing, unreadable or not a pg_dump archive."""


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


# -- progress of pg_dump and pg_restore in bytes ----------------------------------------
#
# pg_dump and pg_restore say which table they start (--verbose) but not how far
# they are in it, and a dump's size on disk is compressed. So the unit is the
# source's table data: each table weighs its heap + TOAST size, read from
# pg_class before the dump (and kept next to the dump in <dump>.meta.json for
# the restore). A finished table counts its whole weight; the table being
# copied counts the share of its rows that pg_stat_progress_copy (PostgreSQL
# 14+) says went through its COPY, so a big table moves the bar, and the last
# report is the total exactly. A restore of a dump without that file (a dump
# dbtasks did not make) counts what it can measure, the restored tables' sizes
# plus the bytes of the COPYs under way, without a total and so without an ETA.


@dataclasses.dataclass(frozen=True)
class TableSize:
    """The weight of one table's data: heap + TOAST bytes, and its row estimate (None: unknown)."""

    bytes: int
    rows: int | None = None


# Heap + TOAST of every user table (no indexes: pg_dump copies rows, not
# indexes), with the best row estimate at hand: the statistics' live rows, else
# the planner's reltuples (-1 before the first VACUUM/ANALYZE).
TABLE_SIZES_SQL = """
select n.nspname, c.relname,
       pg_relation_size(c.oid) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0),
       coalesce(nullif(s.n_live_tup, 0), nullif(greatest(c.reltuples, 0), 0)::bigint)
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
left join pg_stat_user_tables s on s.relid = c.oid
where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
"""


def table_sizes(conn, exclude: tuple[str, ...] = ()) -> dict[str, TableSize]:
    """``schema.table`` (as pg_dump and pg_restore print them) -> its :class:`TableSize`,
    leaving out tables matching the ``exclude`` patterns (pg_dump ``--exclude-table-data``)."""
    matchers = [pattern_regex(p) for p in exclude]
    sizes = {}
    for schema, table, size, rows in conn.execute(sa.text(TABLE_SIZES_SQL)):
        if any(m[0].fullmatch(schema) and m[1].fullmatch(table) for m in matchers):
            continue
        sizes[f"{schema}.{table}"] = TableSize(int(size or 0), int(rows) if rows else None)
    return sizes


def pattern_regex(pattern: str) -> tuple[re.Pattern, re.Pattern]:
    """(schema, table) regexes of a pg_dump table pattern: ``*``, ``?``, ``"Quoted"``, unquoted folded to lower case.

    An unqualified pattern matches its tables in every schema, as pg_dump's does.
    """
    parts, current, quoted, i = [], "", False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if quoted and pattern[i + 1:i + 2] == '"':
                current += re.escape('"')
                i += 1
            else:
                quoted = not quoted
        elif quoted:
            current += re.escape(ch)
        elif ch == ".":
            parts.append(current)
            current = ""
        elif ch == "*":
            current += ".*"
        elif ch == "?":
            current += "."
        else:
            current += re.escape(ch.lower())
        i += 1
    parts.append(current)
    schema, table = (parts[-2], parts[-1]) if len(parts) >= 2 else (".*", parts[0])
    return re.compile(schema), re.compile(table)


def meta_path(dump: Path) -> Path:
    """The sidecar of a dump dbtasks made: ``<dump>.meta.json`` (table sizes for the restore's progress)."""
    return dump.with_name(dump.name + ".meta.json")


def write_meta(dump: Path, database: str, server_version: str, sizes: dict[str, TableSize]) -> Path:
    path = meta_path(dump)
    body = {
        "dbtasks_dump_meta": 1,
        "database": database,
        "server_version": server_version,
        "data_bytes": sum(s.bytes for s in sizes.values()),
        "tables": {name: {"bytes": s.bytes, "rows": s.rows} for name, s in sorted(sizes.items())},
    }
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path


def read_meta(dump: Path) -> dict[str, TableSize] | None:
    """The table sizes recorded next to ``dump``; None when there is no usable sidecar (a foreign dump)."""
    try:
        body = json.loads(meta_path(dump).read_text())
        return {name: TableSize(int(t["bytes"]), int(t["rows"]) if t.get("rows") else None) for name, t in body["tables"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def remove_meta(dump: Path) -> None:
    meta_path(dump).unlink(missing_ok=True)


_STARTED = re.compile(r'(?:dumping contents of table|processing data for table) "([^"]+)"')
_POST_DATA = re.compile(r'creating (INDEX|CONSTRAINT|FK CONSTRAINT) "([^"]+)"')

COPY_SQL = """
select n.nspname, c.relname, p.bytes_processed, p.tuples_processed
from pg_stat_progress_copy p
join pg_stat_activity a on a.pid = p.pid
left join pg_class c on c.oid = p.relid
left join pg_namespace n on n.oid = c.relnamespace
where p.datname = current_database() and p.pid <> pg_backend_pid()
  and (cast(:app as text) is null or a.application_name = :app)
"""

INDEX_SQL = """
select coalesce(n.nspname || '.' || t.relname, '?'), p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total
from pg_stat_progress_create_index p
left join pg_class t on t.oid = p.relid  -- the new index itself is not committed, so not visible
left join pg_namespace n on n.oid = t.relnamespace
where p.datname = current_database() and p.pid <> pg_backend_pid()
"""

# Sizes of the tables not being copied right now (those are counted by their COPY).
RESTORED_SQL = """
select coalesce(sum(pg_relation_size(c.oid) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)), 0)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and not (n.nspname || '.' || c.relname = any(cast(:busy as text[])))
"""


class CopyWatch:
    """Progress of a pg_dump (COPY TO) or pg_restore (COPY FROM) in bytes of table data, as ``stage``.

    Feed it the program's stderr lines (:meth:`line`); while the program runs
    a thread polls ``url``'s database every ``interval`` seconds and reports.
    ``sizes`` are the tables' weights (None: measure, no total); ``app`` keeps
    to the sessions of that application_name (pg_dump on a shared source).
    ``indexes`` (a restore) is how many indexes and constraints the archive
    builds: once pg_restore starts on them they are reported as stage
    ``indexes``, with the index being built and its phase as the detail.
    Every failure of the polling only stops the polling: progress is a nicety,
    never the reason a dump or restore fails.
    """

    def __init__(self, progress: ProgressCallback | None, stage: str, url: URL, sizes: dict[str, TableSize] | None, app: str | None = None, indexes: int = 0, interval: float = 0.5, options: str | None = None) -> None:
        self.progress = progress
        self.stage = stage
        self.url = url
        self.sizes = sizes
        self.app = app
        self.indexes = indexes
        self.interval = interval
        self.options = options
        self.lock = threading.Lock()
        self.telling = threading.Lock()
        self.started: dict[str, int] = {}  # table -> poll number when the program named it
        self.seen: set[str] = set()  # tables seen in pg_stat_progress_copy
        self.busy: dict[str, tuple[int, int]] = {}  # table -> (bytes, rows) of its COPY, last poll
        self.index_started = 0
        self.index_detail = ""
        self.index_current = ""  # what pg_restore said it builds last
        self.index_busy = 0  # builds under way at the last poll
        self.polls = 0
        self.best = 0
        self.measured = 0  # restored bytes of finished tables (measuring mode)
        self.current = ""
        self.blind = False  # polling failed (PostgreSQL < 14 has no pg_stat_progress_copy): tables count when the next starts
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.total = sum(s.bytes for s in sizes.values()) if sizes is not None else None

    # -- what the program says --------------------------------------------------------

    def line(self, line: str) -> None:
        match = _STARTED.search(line)
        if match:
            with self.lock:
                self.started.setdefault(match.group(1), self.polls)
                self.current = match.group(1)
            self._tell()
            return
        match = _POST_DATA.search(line)
        if match:
            with self.lock:
                self.index_started += 1
                self.index_current = f"{match.group(1).lower()} {match.group(2)}"
            self._tell()

    # -- the arithmetic ------------------------------------------------------------------

    def _fraction(self, name: str, copied: int, rows: int) -> float:
        size = self.sizes.get(name) if self.sizes else None
        if size is None:
            return 0.0
        if size.rows:
            share = rows / size.rows
        elif size.bytes:
            share = copied / size.bytes
        else:
            share = 1.0
        return min(max(share, 0.0), 0.99)  # whole only once its COPY ended

    def done(self) -> int:
        """Bytes done now (under the lock), never less than reported before."""
        if self.sizes is None:
            value = self.measured + sum(b for b, _ in self.busy.values())
        else:
            value = 0.0
            for name in set(self.started) | self.seen:
                weight = self.sizes.get(name, TableSize(0)).bytes
                if name in self.busy:
                    value += weight * self._fraction(name, *self.busy[name])
                elif name in self.seen or self.polls - self.started.get(name, self.polls) >= 2 or (self.blind and name != self.current):
                    # Its COPY ended (or was over before a poll saw it; or, with no
                    # polling, pg_dump/pg_restore went on to another table).
                    value += weight
            value = min(int(value), self.total or 0)
        self.best = max(self.best, int(value))
        return self.best

    # -- polling -----------------------------------------------------------------------

    def _poll(self, conn) -> None:
        rows = conn.execute(sa.text(COPY_SQL), {"app": self.app}).all()
        busy = {f"{s}.{t}": (int(b or 0), int(r or 0)) for s, t, b, r in rows if t is not None}
        indexes = conn.execute(sa.text(INDEX_SQL)).all() if self.indexes else []
        measured = None
        if self.sizes is None:
            measured = int(conn.execute(sa.text(RESTORED_SQL), {"busy": list(busy)}).scalar() or 0)
        with self.lock:
            self.polls += 1
            self.busy = busy
            self.seen.update(busy)
            if measured is not None:
                self.measured = measured
            self.index_busy = len(indexes)
            if indexes:
                name, phase, bd, bt, td, tt = indexes[0]
                share = f" {100 * bd / bt:.0f}%" if bt else (f" {100 * td / tt:.0f}%" if tt else "")
                self.index_detail = f"index on {name}: {phase}{share}"
            else:
                self.index_detail = ""

    def _tell(self) -> None:
        # Both the polling thread and the program's stderr lines report: one at a time.
        with self.telling:
            self._tell_now()

    def _tell_now(self) -> None:
        with self.lock:
            if self.indexes and self.index_started:
                # The builds pg_restore named and that are not over: those the last poll saw, at least the last one named.
                done = max(self.index_started - max(self.index_busy, 1), 0)
                detail = self.index_detail or self.index_current
                loading = [n for n in self.busy]
                if loading:
                    detail = f"still loading {', '.join(sorted(loading))}" + (f"; {detail}" if detail else "")
                stage, total, unit = "indexes", self.indexes, "indexes"
            else:
                done, total, unit, detail, stage = self.done(), self.total, "bytes", self.current, self.stage
        if stage == "indexes" and self._stage_now != "indexes":
            # The data are in: close their bar at its total (measured now, without one) before the index bar starts.
            if self.total is None:
                measured = self._measure()
                with self.lock:
                    if measured is not None:
                        self.measured, self.busy = measured, {}
                    final = self.done()
            else:
                final = self.total
            report(self.progress, self.stage, final, self.total, "bytes")
        self._stage_now = stage
        report(self.progress, stage, min(done, total) if total is not None else done, total, unit, detail)

    def _engine(self):
        from dbtasks.database import make_engine

        # A poll must never wait on a table lock (pg_relation_size of a table a
        # parallel pg_restore truncated); a poll that would is skipped.
        options = f"{self.options or ''} -c lock_timeout=200 -c statement_timeout=5000".strip()
        return make_engine(self.url, isolation_level="AUTOCOMMIT", connect_args={"options": options, "application_name": "dbtasks progress"})

    def _measure(self) -> int | None:
        """The restored tables' size now (those being copied: their COPY's bytes), or None when that cannot be had quickly."""
        engine = self._engine()
        try:
            with engine.connect() as conn:
                busy = {f"{s}.{t}": int(b or 0) for s, t, b, _ in conn.execute(sa.text(COPY_SQL), {"app": self.app}) if t is not None}
                return int(conn.execute(sa.text(RESTORED_SQL), {"busy": list(busy)}).scalar() or 0) + sum(busy.values())
        except Exception:  # noqa: BLE001 - progress is a nicety
            return None
        finally:
            engine.dispose()

    def _run(self) -> None:
        engine = self._engine()
        try:
            with engine.connect() as conn:
                while not self.stop.wait(self.interval):
                    try:
                        self._poll(conn)
                    except sa.exc.OperationalError as exc:
                        if "lock timeout" in str(exc.orig) or "statement timeout" in str(exc.orig):
                            continue
                        raise
                    self._tell()
        except Exception:  # noqa: BLE001 - no progress is better than a failed dump
            with self.lock:
                self.blind = True
            return
        finally:
            engine.dispose()

    def __enter__(self) -> "CopyWatch":
        self._stage_now = self.stage
        report(self.progress, self.stage, 0, self.total, "bytes")
        if self.progress is not None:
            self.thread = threading.Thread(target=self._run, name=f"dbtasks {self.stage} progress", daemon=True)
            self.thread.start()
        return self

    def finish(self, measured: int | None = None) -> int:
        """Stop polling and report the end: every byte done (or ``measured``, the restored size, when measuring)."""
        self._halt()
        with self.telling, self.lock:
            if self.sizes is None:
                final = total = measured if measured is not None else self.done()
            else:
                final = total = self.total or 0
        if self._stage_now != "indexes":
            report(self.progress, self.stage, final, total, "bytes")
        elif self.indexes:
            report(self.progress, "indexes", self.indexes, self.indexes, "indexes")
        return final

    def _halt(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def __exit__(self, *exc) -> None:
        self._halt()


def restored_bytes(conn) -> int:
    """Heap + TOAST bytes of every user table of the connected database."""
    return int(conn.execute(sa.text(RESTORED_SQL), {"busy": []}).scalar() or 0)


# -- fault injection ------------------------------------------------------------


def pause_point(stage: str) -> None:
    """Fault injection: stop at ``stage`` when ``DBTASKS_TEST_PAUSE_AT`` names it.

    Documented in the README (Development): with ``DBTASKS_TEST_PAUSE_AT=<stage>``
    and ``DBTASKS_TEST_PAUSE_FILE=<path>`` the process writes its pid to the
    file on reaching the stage and sleeps, so a test (or a person rehearsing an
    outage) can kill it at a known point and watch the next run recover.
    Unset, this does nothing.
    """
    if os.environ.get("DBTASKS_TEST_PAUSE_AT") != stage:
        return
    marker = os.environ.get("DBTASKS_TEST_PAUSE_FILE")
    if marker:
        Path(marker).write_text(f"{os.getpid()} {stage}\n")
    time.sleep(float(os.environ.get("DBTASKS_TEST_PAUSE_SECONDS", "600")))


def server_major(version_num: int) -> int:
    return version_num // 10000


def ensure_tool_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create directory {path} ({exc.strerror})", "choose a writable directory") from None
    return path
