"""``db-rehearse-prod``: apply the pending revisions to a copy of production and report what each one locks.

A migration can be correct and still take a deploy down: ``ALTER TABLE ... ADD
COLUMN ... DEFAULT random()`` rewrites the whole table under an ACCESS
EXCLUSIVE lock, and on 50 million rows that is minutes of every query on the
table waiting. An empty or seeded database never shows it. This verb:

1. copies environment ``FROM`` (default ``prod``) into a database kept on the
   local server, ``<db>_rehearse_prod``, through the same machinery as
   ``dump-and-restore`` (pg_dump, then pg_restore into a scratch database that
   takes the copy's name only when complete; the developer's own database is
   never touched; the dump file is deleted as soon as it is loaded). With
   masking rules, :func:`dbtasks.data.masking.apply` masks the copy before it
   takes its name. ``REUSE=1`` skips the copy when one exists;
2. without access to production, ``ROWS=<n>`` rehearses instead on the
   generated rows of ``db-rehearse`` (:func:`dbtasks.checks.rehearse.fill`),
   ``n`` per table, with the revisions db-rehearse would pick (``SINCE``/``ALL``);
3. clones the copy (``CREATE DATABASE ... TEMPLATE``, so the copy stays as it
   was for the next ``REUSE=1``) and applies every pending revision one at a
   time through the project's env.py, measuring each one:

   - wall time;
   - every lock the migrating session took on a relation, with its mode and
     how long it was held: in-process, after every statement, the session's
     own ``pg_locks`` rows are read (so even a lock held for a millisecond
     is seen, taken no later than that statement's start and released at
     commit), and a second connection samples ``pg_locks`` for the session's
     pid every ``SAMPLE_SECONDS`` (which also sees time spent *waiting*);
   - whether a table was rewritten (its ``pg_class.relfilenode`` changed),
     with its row count and size before;
   - the rows it inserted, updated and deleted (``pg_stat_user_tables``);
   - the statements that ran longest (timed in-process).

A finding (exit 1) is an ACCESS EXCLUSIVE lock on a table held for
``rehearse_lock_threshold`` or longer (default 1 s; ``long-exclusive-lock``),
a lock that blocks the table's writes (SHARE from ``CREATE INDEX``, SHARE ROW
EXCLUSIVE from a foreign key) held as long (``long-write-lock``), a rewrite
of a table with ``rehearse_rewrite_rows`` rows or more (default 10,000;
``table-rewrite``), or a revision that fails on the copy (``fails-on-copy``). Each finding
carries a remedy fitting the statement: build indexes concurrently, add
constraints NOT VALID then VALIDATE, add the column without the volatile
default and backfill in batches (:mod:`dbtasks.data.backfill`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext, RevisionStep
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL

from dbtasks import names
from dbtasks.checks import Finding
from dbtasks.config import Settings, shown_path
from dbtasks.database import admin_url, connect, database_exists, describe, start_hint
from dbtasks.errors import ConfigError, ProtectedEnvironment, UsageError, redact
from dbtasks.formatting import human_bytes

NAME = "rehearse-prod"
SAMPLE_SECONDS = 0.01
COPY_SUFFIX = "_rehearse_prod"
_SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
_TABLE_KINDS = {"r": "table", "p": "table", "m": "materialized view"}
_KINDS = {**_TABLE_KINDS, "i": "index", "I": "index", "S": "sequence", "v": "view", "f": "foreign table", "c": "type", "t": "toast"}


# -- the report ---------------------------------------------------------------------------


@dataclasses.dataclass
class Lock:
    """One lock mode the migrating session held on one relation."""

    relation: str
    kind: str
    mode: str  # AccessExclusiveLock, ShareLock, ...
    seconds: float  # from the statement that took it (or the first sample) to its release
    waited: float = 0.0  # seconds the sampler saw it requested and not granted
    statement: str | None = None  # the statement after which it was first seen


@dataclasses.dataclass
class Rewrite:
    table: str
    rows: int
    bytes: int


@dataclasses.dataclass
class Statement:
    seconds: float
    sql: str


@dataclasses.dataclass
class RevisionReport:
    revision: str
    message: str
    file: str | None
    seconds: float
    locks: list[Lock] = dataclasses.field(default_factory=list)
    rewrites: list[Rewrite] = dataclasses.field(default_factory=list)
    rows: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # table -> inserted/updated/deleted
    statements: list[Statement] = dataclasses.field(default_factory=list)  # longest first
    error: str | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RehearsalReport:
    """What ``db-rehearse-prod`` found: one report per revision, then the findings."""

    source: str  # "prod", or "generated (ROWS=...)"
    database: str  # the copy rehearsed on (a clone of it was migrated)
    restored: bool  # False when REUSE=1 found a copy
    revisions: list[RevisionReport] = dataclasses.field(default_factory=list)
    findings: list[Finding] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "source": self.source, "database": self.database, "restored": self.restored, "seconds": round(self.seconds, 3),
            "revisions": [r.as_dict() for r in self.revisions], "findings": [f.as_dict() for f in self.findings], "notes": self.notes,
        }


def seconds_of(duration: str) -> float:
    """A PostgreSQL-style duration (as :func:`dbtasks.config.parse_duration` leaves it) in seconds."""
    match = re.fullmatch(r"(\d+)(us|ms|s|min|h|d)", duration)
    if not match:
        raise UsageError(f"{duration!r} is not a duration such as 1s or 500ms", "set DBTASKS_REHEARSE_LOCK_THRESHOLD to e.g. 1s")
    factor = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}[match.group(2)]
    return int(match.group(1)) * factor


# -- the verb -----------------------------------------------------------------------------


def copy_name(settings: Settings) -> str:
    """Where the production copy is kept: ``<db>_rehearse_prod`` (names are limited to 63 bytes)."""
    return settings.database_name[: 63 - len(COPY_SUFFIX)] + COPY_SUFFIX


def rehearse_prod(
    settings: Settings,
    source_env: str | None = None,
    reuse: bool = False,
    rows: int | None = None,
    progress=None,
) -> RehearsalReport:
    """Apply every pending revision, one at a time, to a copy of ``source_env`` (default prod) and report its locks.

    With ``rows`` (and no ``source_env``) the copy is a database of generated
    rows instead, ``rows`` per table, at the parent of the revisions
    db-rehearse would pick. ``reuse`` keeps the last copy of production
    instead of restoring it again. The copy itself is never migrated: a clone
    of it is, and is dropped afterwards.
    """
    from dbtasks.safety import protection

    started = time.monotonic()
    if rows is not None and source_env:
        raise UsageError(
            f"ROWS={rows} rehearses on generated rows, FROM={source_env} on a copy of {source_env}: give one",
            f"`{names.command('db-rehearse-prod', FROM=source_env)}` or `{names.command('db-rehearse-prod', ROWS=str(rows))}`",
        )
    target = protection(settings)
    if target.protected:
        raise ProtectedEnvironment(
            f"refusing to keep a production copy next to {target.why}",
            "the copy is kept on the server of the target: point DATABASE_URL at a development server, or leave out ENV (FROM= names the source)",
        )
    if rows is not None:
        report = _rehearse_generated(settings, rows)
    else:
        report = _rehearse_copy(settings, (source_env or "prod").strip(), reuse, progress)
    report.seconds = time.monotonic() - started
    return report


def _rehearse_copy(settings: Settings, source_env: str, reuse: bool, progress) -> RehearsalReport:
    from dbtasks import migrations

    name = copy_name(settings)
    restored, notes = False, []
    with connect(admin_url(settings.url), start_hint(settings), autocommit=True, origin=settings.url_origin):
        pass  # a stopped local server: one line naming start-db, as every other recipe says
    if not (reuse and database_exists(settings.url, name)):
        notes = restore_copy(settings, source_env, name, progress)
        restored = True
    report = RehearsalReport(source_env, name, restored, notes=notes)
    if reuse and restored:
        report.notes.append(f"REUSE=1 found no copy {name!r}, so {source_env} was copied")
    script = migrations.script_directory(settings)
    with _clone(settings, name) as url:
        with connect(url) as conn:
            current = tuple(MigrationContext.configure(conn).get_current_heads())
        with migrations.translate_errors(settings):
            steps = list(script._upgrade_revs("heads", current))  # noqa: SLF001 - alembic's own planner, oldest first
        if not steps:
            report.notes.append(f"the copy of {source_env} is at {', '.join(current) or 'base'}: no pending revision")
            return report
        _analyze(url)
        _apply(settings, url, script, steps, report)
    return report


def restore_copy(settings: Settings, source_env: str, name: str, progress=None) -> list[str]:
    """Dump ``source_env`` and restore it as database ``name`` on the local server (built in a scratch database first).

    The dump goes to a temporary directory; its rows are deleted as soon as
    they are loaded. With masking rules (checked against the source's catalog
    before anything is dumped), the copy is masked before its indexes are
    built and before it takes its name: the one call site of masking for the
    rehearsal.
    """
    from dbtasks.data import masking
    from dbtasks.data.dump import FORMATS, dump_db, read_archive, source_facts
    from dbtasks.data.restore import _restore_full, _same_database, drop_rows, source_settings, working_dump_settings

    try:
        source = source_settings(settings, source_env)
    except ConfigError as exc:
        raise ConfigError(exc.message, f"{exc.remedy}, or rehearse on generated rows: `{names.command('db-rehearse-prod', ROWS='1000000')}`") from None
    copy = settings.with_(database_url=settings.url.set(database=name).render_as_string(hide_password=False), env=None, db_server="external")
    if _same_database(source.url, copy.url):
        raise UsageError(f"source {source_env!r} is the copy itself ({describe(copy.url)})", "pick another FROM")
    rules = masking.load_rules(settings)
    source_facts(source)
    if rules:
        with connect(source.url, origin=source.url_origin) as conn:
            masking.validate(settings, conn, rules, try_it=False)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dbtasks-rehearse-") as tmp:
        chosen = working_dump_settings(source)
        dumped = dump_db(chosen, output=Path(tmp) / f"{source.database_name}{FORMATS[chosen.dump_format][1]}", progress=progress, meta=False)
        info = read_archive(dumped.path, settings.pg_bin)

        def masked(scratch: URL) -> None:
            drop_rows(info)
            if rules:
                result = masking.apply(settings, scratch, rules)
                notes.append("the copy was masked by the masking rules before the rehearsal")
                notes.extend(result.notes)

        _restore_full(copy, info, settings.restore_jobs, settings.restore_owner, progress, between=masked)
    return notes


@contextlib.contextmanager
def _clone(settings: Settings, name: str) -> Iterator[URL]:
    """A throwaway clone of database ``name`` (the copy stays as it was, for REUSE=1)."""
    from dbtasks.database import scratch

    with scratch(settings, template=name, prefix="dbtasks_rehearse", why="db-rehearse-prod clones the copy") as url:
        yield url


def _analyze(url: URL) -> None:
    """Row estimates for the rewrite report (pg_restore and generated rows leave none)."""
    with connect(url, autocommit=True) as conn:
        conn.exec_driver_sql("ANALYZE")


def _rehearse_generated(settings: Settings, rows: int) -> RehearsalReport:
    from dbtasks.checks.rehearse import fill, plan
    from dbtasks.checks.workspace import Workspace

    with Workspace(settings) as workspace:
        report = RehearsalReport(f"generated (ROWS={rows})", "", True)
        planned = plan(workspace, report.notes)  # the same revisions, parents and notes as db-rehearse
        if planned is None:
            return report
        chosen, parents = planned
        url = workspace.scratch()
        report.database = url.database or ""
        for parent in parents:
            workspace.upgrade(url, parent)
        counts = fill(url, rows, report.notes)
        report.notes.append(f"{sum(counts.values())} generated rows in {sum(1 for n in counts.values() if n)} table(s) at {', '.join(parents)}")
        if not chosen:
            return report
        _analyze(url)
        steps = [RevisionStep(workspace.script.revision_map, s, True) for s in chosen]
        _apply(settings, url, workspace.script, steps, report)
    return report


# -- measuring one revision ----------------------------------------------------------------


class _Recorder:
    """Statements and locks of the migrating session, seen in-process (SQLAlchemy events on every engine).

    Only the thread that runs env.py is recorded: the sampler's own
    connection runs in another thread.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.statements: list[Statement] = []
        self.locks: dict[tuple[int, str], tuple[float, str]] = {}  # (oid, mode) -> (taken no later than, statement)
        self.pids: list[int] = []
        self.commits: list[float] = []
        self._started: dict[int, float] = {}

    def _mine(self) -> bool:
        return threading.get_ident() == self.thread

    def before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self._mine():
            self._started[id(cursor)] = time.monotonic()

    def after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not self._mine():
            return
        start = self._started.pop(id(cursor), None)
        if start is None:
            return
        self.statements.append(Statement(round(time.monotonic() - start, 4), " ".join(str(statement).split())))
        try:
            raw = conn.connection.dbapi_connection
            own = raw.cursor()
            try:
                own.execute(
                    "select pg_backend_pid(), l.relation::bigint, l.mode from pg_locks l"
                    " where l.pid = pg_backend_pid() and l.locktype = 'relation' and l.granted"
                    " and l.database = (select oid from pg_database where datname = current_database())"
                )
                found = own.fetchall()
            finally:
                own.close()
        except Exception:  # noqa: BLE001 - a driver that cannot run a second cursor here: the sampler still sees the locks
            return
        for pid, oid, mode in found:
            if pid not in self.pids:
                self.pids.append(pid)
            self.locks.setdefault((int(oid), mode), (start, self.statements[-1].sql))

    def commit(self, conn) -> None:
        if self._mine():
            self.commits.append(time.monotonic())

    @contextlib.contextmanager
    def listening(self) -> Iterator["_Recorder"]:
        events = (("before_cursor_execute", self.before), ("after_cursor_execute", self.after), ("commit", self.commit))
        for name, fn in events:
            sa.event.listen(sa.engine.Engine, name, fn)
        try:
            yield self
        finally:
            for name, fn in events:
                sa.event.remove(sa.engine.Engine, name, fn)


class _Sampler(threading.Thread):
    """A second connection reading pg_locks for the migrating session every SAMPLE_SECONDS."""

    def __init__(self, url: URL, recorder: _Recorder):
        super().__init__(daemon=True, name="dbtasks-lock-sampler")
        self.url = url
        self.recorder = recorder
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.seen: dict[tuple[int, str], list[float]] = {}  # (oid, mode) -> [first granted, last granted]
        self.waiting: dict[tuple[int, str], list[float]] = {}
        self.error: str | None = None

    def run(self) -> None:
        try:
            with connect(self.url, autocommit=True) as conn:
                self.ready.set()
                query = sa.text(
                    "select l.relation::bigint, l.mode, l.granted from pg_locks l"
                    " where l.pid = any(:pids) and l.locktype = 'relation'"
                    " and l.database = (select oid from pg_database where datname = current_database())"
                )
                app = sa.text(
                    "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()"
                    " and backend_type = 'client backend'"
                )
                pids: list[int] = []
                while not self.stop.is_set():
                    pids = list(self.recorder.pids) or pids or list(conn.execute(app).scalars())
                    now = time.monotonic()
                    if pids:
                        for oid, mode, granted in conn.execute(query, {"pids": pids}):
                            into = self.seen if granted else self.waiting
                            span = into.setdefault((int(oid), mode), [now, now])
                            span[1] = now
                    self.stop.wait(SAMPLE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - a sampler that fails leaves the in-process record
            self.error = redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            self.ready.set()


def _tables(conn: sa.Connection) -> dict[int, tuple[str, int, int, int]]:
    """oid -> (schema.name, relfilenode, estimated rows, bytes) of every user table."""
    rows = conn.execute(sa.text(
        "select c.oid::bigint, n.nspname || '.' || c.relname, c.relfilenode::bigint,"
        " greatest(c.reltuples, coalesce(s.n_live_tup, 0))::bigint, pg_table_size(c.oid)"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " left join pg_stat_user_tables s on s.relid = c.oid"
        " where c.relkind in ('r', 'm', 'p') and n.nspname <> all(:system) and n.nspname not like 'pg\\_temp%'"
    ), {"system": list(_SYSTEM_SCHEMAS)})
    return {oid: (name, node, max(int(est), 0), int(size or 0)) for oid, name, node, est, size in rows}


def _tuples(conn: sa.Connection) -> dict[str, tuple[int, int, int]]:
    rows = conn.execute(sa.text("select schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del from pg_stat_user_tables"))
    return {name: (int(i), int(u), int(d)) for name, i, u, d in rows}


def _relations(conn: sa.Connection, oids: set[int]) -> dict[int, tuple[str, str, str]]:
    """oid -> (schema, schema.name, kind) of relations that still exist."""
    if not oids:
        return {}
    rows = conn.execute(sa.text(
        "select c.oid::bigint, n.nspname, n.nspname || '.' || c.relname, c.relkind::text from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace where c.oid = any(:oids)"
    ), {"oids": [int(o) for o in oids]})
    return {oid: (schema, name, _KINDS.get(kind, kind)) for oid, schema, name, kind in rows}


def _wait_gone(conn: sa.Connection, pids: list[int], limit: float = 2.0) -> None:
    """Until the migrating session has ended (its counters reach pg_stat_user_tables when it exits)."""
    deadline = time.monotonic() + limit
    while pids and time.monotonic() < deadline:
        if not conn.execute(sa.text("select 1 from pg_stat_activity where pid = any(:p)"), {"p": pids}).scalar():
            return
        time.sleep(0.01)


def _apply(settings: Settings, url: URL, script: ScriptDirectory, steps: list[RevisionStep], report: RehearsalReport) -> None:
    """Apply ``steps`` one per env.py run on ``url``, measuring each; findings into ``report``."""
    from dbtasks.migrations import run_env

    threshold = seconds_of(settings.rehearse_lock_threshold)
    for step in steps:
        revision = step.revision
        with connect(url, autocommit=True) as conn:
            before = _tables(conn)
            counts_before = _tuples(conn)
        recorder = _Recorder()
        sampler = _Sampler(url, recorder)
        sampler.start()
        sampler.ready.wait(10)
        error = None
        started = time.monotonic()
        try:
            with recorder.listening():
                run_env(settings, url, lambda heads, context, step=step: [step], script)
        except Exception as exc:  # noqa: BLE001 - reported below, then raised for the CLI
            error = exc
        finished = time.monotonic()
        sampler.stop.set()
        sampler.join(5)
        rev = RevisionReport(revision.revision, (revision.doc or "").strip().splitlines()[0] if revision.doc else "", shown_path(revision.path) if revision.path else None, round(finished - started, 4))
        with connect(url, autocommit=True) as conn:
            _wait_gone(conn, recorder.pids)
            after = _tables(conn)
            counts_after = _tuples(conn)
            relations = _relations(conn, {o for o, _ in recorder.locks} | {o for o, _ in sampler.seen} | {o for o, _ in sampler.waiting})
        released = recorder.commits[-1] if recorder.commits else finished
        for key in sorted(set(recorder.locks) | set(sampler.seen) | set(sampler.waiting)):
            oid, mode = key
            if oid in relations:
                schema, name, kind = relations[oid]
            elif oid in before:  # a table the revision dropped
                schema, name, kind = "", f"{before[oid][0]} (dropped)", "table"
            else:  # a relation that lived only inside the revision (the new heap and indexes of a rewrite)
                continue
            if schema in _SYSTEM_SCHEMAS or name.rsplit(".", 1)[-1].startswith("alembic_version"):  # alembic's own bookkeeping
                continue
            taken, statement = recorder.locks.get(key, (None, None))
            span = sampler.seen.get(key)
            if span is not None:
                taken = min(taken, span[0]) if taken is not None else span[0]
            if taken is None:  # only ever seen waiting
                taken = released
            end = released if recorder.commits else (span[1] + SAMPLE_SECONDS if span else released)
            wait = sampler.waiting.get(key)
            rev.locks.append(Lock(name, kind, mode, round(max(end - taken, 0.0), 4), round(wait[1] - wait[0] + SAMPLE_SECONDS, 4) if wait else 0.0, statement))
        rev.locks.sort(key=lambda lock: (-lock.seconds, lock.relation, lock.mode))
        for oid, (name, node, est, size) in before.items():
            if oid in after and after[oid][1] != node:
                rev.rewrites.append(Rewrite(name, est, size))
        for name, (i, u, d) in counts_after.items():
            i0, u0, d0 = counts_before.get(name, (0, 0, 0))
            delta = {"inserted": i - i0, "updated": u - u0, "deleted": d - d0}
            if any(delta.values()) and name != "public.alembic_version" and not name.endswith(".alembic_version"):
                rev.rows[name] = delta
        rev.statements = sorted((s for s in recorder.statements if not _housekeeping(s.sql)), key=lambda s: -s.seconds)[:5]
        if sampler.error:
            report.notes.append(f"{revision.revision}: the lock sampler stopped: {sampler.error}")
        report.revisions.append(rev)
        if error is not None:
            from dbtasks.envpy import EnvPyLeak
            from dbtasks.errors import DbtasksError
            from dbtasks.migrations import EnvPyError

            if isinstance(error, (EnvPyError, EnvPyLeak)) or not isinstance(error, DbtasksError):
                raise error
            rev.error = redact(error.message.removeprefix("the migration failed: "))
            report.findings.append(Finding(
                NAME, "fails-on-copy", f"the upgrade of {revision.revision} fails on the copy: {rev.error}",
                revision=revision.revision, file=rev.file,
                remedy="fix the revision for the data it meets (a default or a backfill before SET NOT NULL, deduplicate before a unique index, clean values before a cast); the later revisions were not applied",
            ))
            return
        _judge(settings, rev, threshold, report)


def _housekeeping(sql: str) -> bool:
    """Alembic's own statements and the catalog reads env.py makes, left out of "longest statements"."""
    low = sql.lower()
    return "alembic_version" in low or low.startswith(("select pg_catalog.", "select current_schema", "show ", "select t.oid, typarray"))


def remedy_for(statements: list[str], rewrite: bool) -> str:
    """What to do instead, from the statements of the revision."""
    text = " ".join(statements).lower()
    backfill = (
        "add the column without a default (or with a constant one), fill it in batches with the backfill helper "
        f"(dbtasks.data.backfill.batched_update in a script run by `{names.command('run-script', SCRIPT='scripts/backfills/<name>.py')}`), then set the default"
    )
    if re.search(r"create (unique )?index (?!concurrently)", text):
        return "build the index with CREATE INDEX CONCURRENTLY (op.create_index(..., postgresql_concurrently=True) inside op.get_context().autocommit_block())"
    if "foreign key" in text or re.search(r"add constraint .* check", text):
        return "add the constraint NOT VALID (postgresql_not_valid=True), then VALIDATE CONSTRAINT in a later revision: validation takes no ACCESS EXCLUSIVE lock"
    if "set not null" in text:
        return "add CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it, then SET NOT NULL (PostgreSQL 12+ skips the scan), then drop the check"
    if " type " in text and "alter column" in text:
        return "add a new column of the new type, backfill it in batches (dbtasks.data.backfill), switch reads over, then drop the old column"
    if rewrite or " default " in text:
        return backfill
    return "split the revision so the long step runs outside the ACCESS EXCLUSIVE lock, or run it at a quiet hour with lock_timeout set"


# Table locks that make every write of the table wait (CREATE INDEX takes SHARE, a foreign key SHARE ROW EXCLUSIVE).
WRITE_BLOCKING = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock")


def _judge(settings: Settings, rev: RevisionReport, threshold: float, report: RehearsalReport) -> None:
    statements = [s.sql for s in rev.statements]
    long = [lock for lock in rev.locks if lock.kind in _TABLE_KINDS.values() and lock.seconds >= threshold]
    exclusive = {lock.relation for lock in long if lock.mode == "AccessExclusiveLock"}
    for lock in long:
        why = [lock.statement] if lock.statement else statements
        rewritten = any(w.table == lock.relation for w in rev.rewrites)
        if lock.mode == "AccessExclusiveLock":
            report.findings.append(Finding(
                NAME, "long-exclusive-lock",
                f"{rev.revision} holds ACCESS EXCLUSIVE on {lock.relation} for {_duration(lock.seconds)} (threshold {_duration(threshold)}): every read and write of the table waits",
                revision=rev.revision, file=rev.file, remedy=remedy_for(why, rewritten),
            ))
        elif lock.mode in WRITE_BLOCKING and lock.relation not in exclusive:
            report.findings.append(Finding(
                NAME, "long-write-lock",
                f"{rev.revision} holds {lock.mode} on {lock.relation} for {_duration(lock.seconds)} (threshold {_duration(threshold)}): every write of the table waits",
                revision=rev.revision, file=rev.file, remedy=remedy_for(why, rewritten),
            ))
    for rewrite in rev.rewrites:
        if rewrite.rows >= settings.rehearse_rewrite_rows:
            report.findings.append(Finding(
                NAME, "table-rewrite",
                f"{rev.revision} rewrites {rewrite.table} ({rewrite.rows} rows, {human_bytes(rewrite.bytes)}; threshold {settings.rehearse_rewrite_rows} rows) under ACCESS EXCLUSIVE",
                revision=rev.revision, file=rev.file, remedy=remedy_for(rewriting_statements(rev, rewrite.table) or statements, True),
            ))


def rewriting_statements(rev: RevisionReport, table: str) -> list[str]:
    """The statements that took ACCESS EXCLUSIVE on ``table``: the one that rewrote it is among them.

    The remedy for a rewrite is chosen from these, not from every statement of
    the revision: an ALTER COLUMN ... TYPE next to a CREATE INDEX on another
    table is a rewrite to backfill, not an index to build concurrently.
    """
    return [lock.statement for lock in rev.locks if lock.relation == table and lock.mode == "AccessExclusiveLock" and lock.statement]


# -- text output (the CLI prints these lines) -----------------------------------------------




def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def lines(report: RehearsalReport) -> list[str]:
    """The report as a table per revision."""
    out = [f"rehearsed {len(report.revisions)} revision(s) on {report.source} ({report.database}{'' if report.restored else ', reused'}) in {report.seconds:.1f}s"]
    for rev in report.revisions:
        out.append("")
        out.append(f"revision {rev.revision}  {rev.message}  {_duration(rev.seconds)}" + (f"  ({rev.file})" if rev.file else ""))
        if rev.locks:
            width = max(len(lock.relation) for lock in rev.locks)
            out.append(f"  {'relation':<{width}}  {'kind':<8}  {'lock':<24}  {'held':>9}  {'waited':>9}")
            for lock in rev.locks:
                out.append(f"  {lock.relation:<{width}}  {lock.kind:<8}  {lock.mode:<24}  {_duration(lock.seconds):>9}  {_duration(lock.waited) if lock.waited else '-':>9}")
        else:
            out.append("  no locks on user relations")
        for w in rev.rewrites:
            out.append(f"  rewritten: {w.table} ({w.rows} rows, {human_bytes(w.bytes)})")
        if not rev.rewrites:
            out.append("  rewritten: none")
        touched = ", ".join(f"{t} +{d['inserted']} ~{d['updated']} -{d['deleted']}" for t, d in rev.rows.items())
        out.append(f"  rows touched: {touched or 'none'}")
        if rev.statements:
            out.append("  longest statements:")
            for s in rev.statements[:3]:
                out.append(f"    {_duration(s.seconds):>9}  {s.sql[:120]}")
        if rev.error:
            out.append(f"  failed: {rev.error}")
    return out
