"""Batched, resumable UPDATE and DELETE: the helper behind backfill scripts.

A backfill walks the table in primary-key order (keyset pagination, no
OFFSET) and changes at most one batch of rows per short transaction, with
``lock_timeout`` set, so no batch holds its row locks for long and the
application keeps running. The position reached is stored in a checkpoint
row (``dbtasks.backfill_checkpoints``) *in the same transaction* as the batch:
killed at any moment, a batch is either applied and recorded or neither, and
the next run resumes after the last applied batch, never applying one twice.

The checkpoint table lives in its own ``dbtasks`` schema so Alembic's
autogenerate, which compares the default schema, does not see it.

Each batch commits with ``synchronous_commit = off``: a crash may lose the
last few batches, but always together with their checkpoint, so a resume
redoes exactly those; per-batch WAL flushes would otherwise dominate.

Batch size adapts: it doubles while batches take under a quarter of
``target_seconds`` and halves when one takes longer, within
``[1, max_batch_size]``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from dbtasks.config import Settings
from dbtasks.database import connection, describe
from dbtasks.data.tools import DataError, ProgressCallback, report
from dbtasks.errors import UsageError

CHECKPOINTS = "dbtasks.backfill_checkpoints"
_CREATE = [
    "create schema if not exists dbtasks",
    f"""create table if not exists {CHECKPOINTS} (
        name text primary key,
        table_name text not null,
        action text not null,
        last_key text[],
        rows_done bigint not null default 0,
        batches bigint not null default 0,
        started_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        finished_at timestamptz
    )""",
]


class BackfillError(DataError):
    """A backfill batch failed; what was applied stays applied and is resumed from."""


@dataclasses.dataclass
class BackfillResult:
    """What a backfill did (or, for a dry run, would do)."""

    name: str
    table: str
    action: str
    rows: int
    batches: int
    seconds: float
    dry_run: bool = False
    resumed: bool = False
    already_finished: bool = False
    max_batch_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@dataclasses.dataclass
class _Table:
    qualified: str
    keys: list[tuple[str, str]]  # (quoted column, type)


def _resolve(conn: sa.Connection, table: str) -> _Table:
    row = conn.execute(
        sa.text(
            "select c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
            "from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass(:t)"
        ),
        {"t": table},
    ).first()
    if row is None:
        raise UsageError(f"table {table!r} does not exist", "give the table name, schema-qualified if it is not in the search path")
    keys = conn.execute(
        sa.text(
            "select quote_ident(a.attname), format_type(a.atttypid, a.atttypmod) "
            "from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord) "
            "join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum "
            "where i.indrelid = :oid and i.indisprimary order by k.ord"
        ),
        {"oid": row[0]},
    ).all()
    if not keys:
        raise UsageError(f"table {table!r} has no primary key", "the batched helper walks the primary key; add one, or write the loop yourself")
    return _Table(row[1], [(k[0], k[1]) for k in keys])


def _checkpoint_exists(conn: sa.Connection) -> bool:
    return conn.execute(sa.text("select to_regclass(:t) is not null"), {"t": CHECKPOINTS}).scalar()


def _key_condition(t: _Table, last_key: list[str] | None, params: dict) -> str:
    if not last_key:
        return "true"
    cols = ", ".join(c for c, _ in t.keys)
    vals = []
    for i, (_, typ) in enumerate(t.keys):
        params[f"_dbtasks_k{i}"] = last_key[i]
        vals.append(f"cast(:_dbtasks_k{i} as {typ})")
    return f"({cols}) > ({', '.join(vals)})"


def _batch_sql(t: _Table, action: str, set_sql: str | None, where: str, key_cond: str) -> str:
    """One batch: lock the next rows in key order, change them by ctid, return (count, last key).

    The rows are reached by ctid (a TID scan), never by a join the planner
    might turn into a scan of the whole table; the ctids cannot move because
    the batch holds the rows' locks.
    """
    cols = [c for c, _ in t.keys]
    aliased = ", ".join(f"{c} as _dbtasks_k{i}" for i, c in enumerate(cols))
    order = ", ".join(cols)
    desc = ", ".join(f"_dbtasks_k{i} desc" for i in range(len(cols)))
    last = ", ".join(f"_dbtasks_k{i}::text" for i in range(len(cols)))
    target = "_t.ctid = any(array(select _dbtasks_ctid from _b))"
    if action == "update":
        change = f"update {t.qualified} as _t set {set_sql} where {target} returning 1"
    else:
        change = f"delete from {t.qualified} as _t where {target} returning 1"
    return (
        f"with _b as materialized (select ctid as _dbtasks_ctid, {aliased} from {t.qualified} where {key_cond} and ({where}) "
        f"order by {order} limit :_dbtasks_limit for update), "
        f"_c as ({change}) "
        f"select (select count(*) from _c), array[{last}] from _b order by {desc} limit 1"
    )


def default_name(table: str, action: str, set_sql: str | None, where: str) -> str:
    digest = hashlib.sha1(f"{action}|{set_sql}|{where}".encode()).hexdigest()[:10]
    return f"{table}:{action}:{digest}"


def _is_lock_timeout(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "pgcode", None) == "55P03" or "lock timeout" in str(exc.orig)


def run_batched(
    settings: Settings,
    table: str,
    action: str,
    set_sql: str | None = None,
    where: str | None = None,
    *,
    name: str | None = None,
    params: dict[str, Any] | None = None,
    batch_size: int = 1000,
    max_batch_size: int = 50_000,
    target_seconds: float = 0.5,
    pause: float = 0.0,
    lock_timeout: str = "2s",
    retries: int = 5,
    dry_run: bool = False,
    restart: bool = False,
    progress: ProgressCallback | None = None,
) -> BackfillResult:
    """Apply an UPDATE (``set_sql``) or DELETE to the rows of ``table`` matching ``where``, batch by batch.

    ``name`` identifies the checkpoint (default: derived from the table and
    SQL, so the same call resumes). ``params`` are bound into ``set_sql`` and
    ``where``. ``pause`` seconds are slept between batches. ``dry_run`` only
    counts the rows still to do. ``restart`` forgets the checkpoint first.
    """
    if action not in ("update", "delete"):
        raise UsageError(f"unknown action {action!r}", "use update or delete")
    if action == "update" and not (set_sql and set_sql.strip()):
        raise UsageError("an update backfill needs set_sql", "e.g. set_sql=\"status = 'done'\"")
    if batch_size < 1:
        raise UsageError(f"batch size {batch_size} must be at least 1")
    where = where.strip() if where and where.strip() else "true"
    name = name or default_name(table, action, set_sql, where)
    user_params = dict(params or {})
    started = time.monotonic()
    with connection(settings) as conn:
        t = _resolve(conn, table)
        has_checkpoints = _checkpoint_exists(conn)
        conn.commit()
        if not dry_run and not has_checkpoints:
            with conn.begin():
                for sql in _CREATE:
                    conn.execute(sa.text(sql))
            has_checkpoints = True
        state = None
        if has_checkpoints:
            if restart and not dry_run:
                with conn.begin():
                    conn.execute(sa.text(f"delete from {CHECKPOINTS} where name = :n"), {"n": name})
            state = conn.execute(sa.text(f"select last_key, finished_at, rows_done from {CHECKPOINTS} where name = :n"), {"n": name}).first()
            conn.commit()
        if state is not None and state.finished_at is not None and not restart:
            return BackfillResult(name, t.qualified, action, 0, 0, time.monotonic() - started, dry_run, True, True)
        resumed = state is not None and state.last_key is not None
        count_params = dict(user_params)
        key_cond = _key_condition(t, list(state.last_key) if resumed else None, count_params)
        total = int(conn.execute(sa.text(f"select count(*) from {t.qualified} where {key_cond} and ({where})"), count_params).scalar())
        conn.commit()
        if dry_run:
            batches = -(-total // batch_size)
            return BackfillResult(name, t.qualified, action, total, batches, time.monotonic() - started, True, resumed)
        if state is None:
            with conn.begin():
                conn.execute(
                    sa.text(f"insert into {CHECKPOINTS} (name, table_name, action) values (:n, :t, :a) on conflict (name) do nothing"),
                    {"n": name, "t": t.qualified, "a": action},
                )

        done = 0
        batches = 0
        size = batch_size
        slowest = 0.0
        failures = 0
        report(progress, "backfill", 0, total, "rows", t.qualified)
        while True:
            batch_started = time.monotonic()
            try:
                with conn.begin():
                    conn.execute(sa.text("select set_config('lock_timeout', :v, true)"), {"v": lock_timeout})
                    # Not waiting for the WAL flush at each commit is safe here: a crash can
                    # only lose whole recent batches together with their checkpoint rows, and
                    # the next run redoes exactly those.
                    conn.execute(sa.text("select set_config('synchronous_commit', 'off', true)"))
                    last_key = conn.execute(
                        sa.text(f"select last_key from {CHECKPOINTS} where name = :n for update"), {"n": name}
                    ).scalar()
                    batch_params = dict(user_params)
                    cond = _key_condition(t, list(last_key) if last_key else None, batch_params)
                    batch_params["_dbtasks_limit"] = size
                    row = conn.execute(sa.text(_batch_sql(t, action, set_sql, where, cond)), batch_params).first()
                    if row is None:
                        conn.execute(sa.text(f"update {CHECKPOINTS} set finished_at = now(), updated_at = now() where name = :n"), {"n": name})
                        break
                    changed, new_key = int(row[0]), list(row[1])
                    conn.execute(
                        sa.text(
                            f"update {CHECKPOINTS} set last_key = :k, rows_done = rows_done + :c, batches = batches + 1, "
                            "updated_at = now() where name = :n"
                        ),
                        {"k": new_key, "c": changed, "n": name},
                    )
            except DBAPIError as exc:
                if _is_lock_timeout(exc) and failures < retries:
                    failures += 1
                    size = max(1, size // 2)
                    time.sleep(min(5.0, 0.2 * 2 ** failures))
                    continue
                first = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
                raise BackfillError(
                    f"backfill {name!r} stopped at batch {batches + 1} on {describe(settings.url)}: {first}",
                    f"{done} row(s) were applied and recorded; fix the cause and run again to resume",
                ) from None
            failures = 0
            elapsed = time.monotonic() - batch_started
            slowest = max(slowest, elapsed)
            done += changed
            batches += 1
            report(progress, "backfill", min(done, max(total, done)), max(total, done), "rows", t.qualified)
            if elapsed < target_seconds / 4:
                size = min(max_batch_size, size * 2)
            elif elapsed > target_seconds:
                size = max(1, min(size // 2, int(size * target_seconds / elapsed)))
            if pause > 0:
                time.sleep(pause)
    return BackfillResult(name, t.qualified, action, done, batches, time.monotonic() - started, False, resumed, False, slowest)


def batched_update(settings: Settings, table: str, set_sql: str, where: str | None = None, **options: Any) -> BackfillResult:
    """``UPDATE table SET set_sql WHERE where`` in resumable batches; see :func:`run_batched`."""
    return run_batched(settings, table, "update", set_sql, where, **options)


def batched_delete(settings: Settings, table: str, where: str | None = None, **options: Any) -> BackfillResult:
    """``DELETE FROM table WHERE where`` in resumable batches; see :func:`run_batched`."""
    return run_batched(settings, table, "delete", None, where, **options)


def checkpoints(settings: Settings) -> list[dict]:
    """Every recorded backfill with its progress (empty when none ran)."""
    with connection(settings) as conn:
        if not _checkpoint_exists(conn):
            return []
        rows = conn.execute(sa.text(f"select * from {CHECKPOINTS} order by started_at")).mappings().all()
    return [dict(r) for r in rows]
