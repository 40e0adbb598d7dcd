"""rehearse: apply the new revisions to a database that has data.

Most migrations that break a deploy work on an empty database: a NOT NULL
column without a default, a unique index over values that repeat, a cast that
some existing value cannot take. Rehearse upgrades a scratch database to the
parent of the new revisions (those added since the git base, as for lint),
fills every table with generated rows that respect column types, nullability,
foreign keys and unique constraints (``rehearse_rows`` per table), then
applies the new revisions one at a time. A revision that fails is a
``fails-with-data`` finding naming it and the database error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import sqlalchemy as sa
from alembic.runtime.migration import RevisionStep
from alembic.script import Script
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import URL

from dbtasks import names
from dbtasks.checks import CheckResult, Finding, declare
from dbtasks.checks.changes import scope as changes_scope
from dbtasks.checks.workspace import Workspace
from dbtasks.database import connect
from dbtasks.envpy import EnvPyLeak
from dbtasks.errors import DbtasksError, redact
from dbtasks.migrations import EnvPyError, revision_ids

NAME = "rehearse"
EPOCH = dt.datetime(2024, 1, 1, 12, 0, 0)

_UNSUPPORTED = object()


def _text(name: str, i: int, length: int | None) -> str:
    text = f"{name}-{i}"
    if length and len(text) > length:
        text = _base36(i).rjust(length, "0")[-length:] if length < 8 else f"{name[: length - 7]}{_base36(i).rjust(6, '0')}"[:length]
    return text


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def value_for(column: sa.Column, type_: Any, i: int) -> Any:
    """A value of ``type_`` for row ``i`` (distinct for distinct ``i`` where the type allows)."""
    if isinstance(type_, sa.Enum):
        labels = list(type_.enums)
        return labels[i % len(labels)] if labels else _UNSUPPORTED
    if isinstance(type_, sa.Boolean):
        return i % 2 == 0
    if isinstance(type_, sa.SmallInteger):
        return (i % 32000) + 1
    if isinstance(type_, sa.Integer):
        return i + 1
    if isinstance(type_, sa.Float):
        return i + 0.5
    if isinstance(type_, sa.Numeric):
        digits = (type_.precision - (type_.scale or 0)) if type_.precision else 9
        return decimal.Decimal((i + 1) % (10 ** max(1, digits)))
    if isinstance(type_, sa.DateTime):
        value = EPOCH + dt.timedelta(hours=i)
        return value.replace(tzinfo=dt.timezone.utc) if getattr(type_, "timezone", False) else value
    if isinstance(type_, sa.Date):
        return EPOCH.date() + dt.timedelta(days=i)
    if isinstance(type_, sa.Time):
        return dt.time(i % 24, i % 60)
    if isinstance(type_, sa.Interval):
        return dt.timedelta(minutes=i + 1)
    if isinstance(type_, (sa.Uuid, postgresql.UUID)):
        return uuid.UUID(int=i + 1) if getattr(type_, "as_uuid", True) else str(uuid.UUID(int=i + 1))
    if isinstance(type_, (postgresql.JSON, postgresql.JSONB, sa.JSON)):
        return {"n": i}
    if isinstance(type_, postgresql.ARRAY):
        item = value_for(column, type_.item_type, i)
        return _UNSUPPORTED if item is _UNSUPPORTED else [item]
    if isinstance(type_, sa.LargeBinary):
        return i.to_bytes(4, "big")
    if isinstance(type_, (postgresql.INET, postgresql.CIDR)):
        return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
    if isinstance(type_, postgresql.MACADDR):
        return "08:00:2b:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255)
    if isinstance(type_, sa.String):  # Text, VARCHAR, CHAR
        return _text(column.name, i, getattr(type_, "length", None))
    return _UNSUPPORTED


def _generated(column: sa.Column) -> bool:
    """Columns the database fills itself: identity, serial, generated."""
    if column.computed is not None or column.identity is not None:
        return True
    default = column.server_default
    arg = getattr(default, "arg", None) if default is not None else None
    text = str(arg) if arg is not None else ""
    return "nextval(" in text


def fill(url: URL, rows: int, notes: list[str]) -> dict[str, int]:
    """Insert ``rows`` generated rows into every table of ``url``; returns the counts."""
    counts: dict[str, int] = {}
    with connect(url) as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            counts[table.name] = _fill_table(conn, table, rows, notes)
        conn.commit()
    return counts


def _fill_table(conn: sa.Connection, table: sa.Table, rows: int, notes: list[str]) -> int:
    parents: dict[sa.ForeignKeyConstraint, list[tuple]] = {}
    for fk in table.foreign_key_constraints:
        referred = fk.referred_table
        columns = [e.column for e in fk.elements]
        parents[fk] = [tuple(r) for r in conn.execute(sa.select(*columns).limit(rows * 4)).all()] if referred is not table else []
    fk_columns = {c.name: (fk, idx) for fk in table.foreign_key_constraints for idx, c in enumerate(fk.columns)}
    # Columns under a primary key, unique constraint or unique index get distinct
    # values; every other value appears twice, as in real data, so a new unique
    # index over them meets duplicates.
    unique = {c.name for c in table.primary_key.columns}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            unique |= {c.name for c in constraint.columns}
    for index in table.indexes:
        if index.unique:
            unique |= {c.name for c in index.columns}
    generated = []
    for i in range(rows):
        row: dict[str, Any] = {}
        for column in table.columns:
            k = i if column.name in unique else i // 2
            if column.name in fk_columns:
                fk, idx = fk_columns[column.name]
                options = parents[fk]
                if not options or (column.nullable and i % 4 == 3):
                    if not column.nullable:
                        notes.append(f"table {table.name} left empty: no rows to reference for {column.name}")
                        return 0
                    row[column.name] = None
                else:
                    row[column.name] = options[k % len(options)][idx]
                continue
            if _generated(column) and column.primary_key:
                continue
            if _generated(column):
                continue
            if column.nullable and i % 4 == 3 and not column.primary_key:
                row[column.name] = None
                continue
            value = value_for(column, column.type, k)
            if value is _UNSUPPORTED:
                if column.nullable:
                    row[column.name] = None
                elif column.server_default is not None:
                    continue
                else:
                    notes.append(f"table {table.name} left empty: no generator for {column.name} ({column.type})")
                    return 0
            else:
                row[column.name] = value
        generated.append(row)
    # One statement when every row fits; else row by row, keeping the ones the constraints allow.
    try:
        with conn.begin_nested():
            conn.execute(table.insert(), generated)
        return len(generated)
    except sa.exc.DBAPIError:
        pass
    inserted, first_error = 0, None
    for row in generated:
        try:
            with conn.begin_nested():
                conn.execute(table.insert(), [row])
            inserted += 1
        except sa.exc.DBAPIError as exc:
            first_error = first_error or str(exc.orig).strip().splitlines()[0]
    if inserted < len(generated):
        notes.append(f"table {table.name}: {inserted} of {len(generated)} rows inserted ({redact(first_error or '')})")
    return inserted


def new_revisions(workspace: Workspace) -> tuple[list[Script], str, str | None]:
    """The revisions in the lint scope, oldest first; the scope's description and note."""
    scope = changes_scope(workspace.settings)
    chosen = [s for s in workspace.revisions() if scope.includes(s.path)]
    return chosen, scope.describe(), scope.note


def run(workspace: Workspace) -> CheckResult:
    """Fill a database at the parent of the new revisions with rows, then apply them."""
    result = CheckResult(NAME)
    chosen, described, note = new_revisions(workspace)
    if note:
        result.notes.append(note)
    if not chosen:
        result.notes.append(f"no new revision to rehearse ({described})")
        return result
    new_ids = {s.revision for s in chosen}
    parents = sorted({d for s in chosen for d in revision_ids(s.down_revision) if d not in new_ids})
    # A changed old revision below a new one is applied on the way to the parents.
    below = set()
    for parent in parents:
        below |= workspace.ancestors(parent)
    chosen = [s for s in chosen if s.revision not in below]
    if not parents:
        # The new revisions start at base: there is nothing to hold rows until the first
        # of them has run, so it runs without data and the others are rehearsed.
        first = chosen.pop(0)
        parents = [first.revision]
        result.notes.append(f"{first.revision} starts the history, so it ran on an empty database")
        if not chosen:
            result.skipped = "the only new revision starts the history: there are no rows to rehearse it on"
            return result
    url = workspace.scratch()
    for parent in parents:
        workspace.upgrade(url, parent)
    counts = fill(url, workspace.settings.rehearse_rows, result.notes)
    filled = sum(1 for n in counts.values() if n)
    result.notes.append(
        f"{len(chosen)} revision(s) applied to a database at {', '.join(parents) or 'base'} with {sum(counts.values())} rows in {filled} table(s)"
    )
    # All new revisions in one env.py run; the step being applied names the culprit.
    applying: list[Script] = []

    def steps(heads, context):
        for script in chosen:
            applying.append(script)
            yield RevisionStep(workspace.script.revision_map, script, True)

    try:
        workspace.run(url, steps)
    except (EnvPyError, EnvPyLeak):
        raise
    except DbtasksError as exc:
        script = applying[-1] if applying else chosen[0]
        text = exc.message.removeprefix("the migration failed: ")
        result.findings.append(Finding(
            NAME, "fails-with-data",
            f"the upgrade of {script.revision} fails on a database with data: {text}",
            revision=script.revision, file=workspace.relpath(script.path),
            remedy="add a server default or backfill before SET NOT NULL, deduplicate before a unique index, clean values before a cast",
        ))
    return result


CHECK = declare(
    name=NAME, recipe="db-rehearse", verb="rehearse", order=50, run=run, doc=__doc__,
    help="Apply the new revisions (SINCE=REF) to a scratch database full of generated rows",
    needs={"history", "single_head", "scratch", "git"}, options=("since", "all_revisions"), params=(names.SINCE, names.ALL),
)
