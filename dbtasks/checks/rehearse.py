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
from typing import Any, Callable

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


def _digits(type_: Any) -> int:
    return max(1, (type_.precision - (type_.scale or 0)) if type_.precision else 9)


def _labels(type_: Any) -> list[str]:
    return list(type_.enums)


def _array(column: sa.Column, type_: Any, i: int) -> Any:
    item = value_for(column, type_.item_type, i)
    return _UNSUPPORTED if item is _UNSUPPORTED else [item]


def _array_sql(column: sa.Column, type_: Any, k: str, rows: int) -> str | None:
    item = sql_value(column, type_.item_type, k, rows)
    return None if item is None else f"ARRAY[{item}]"


def _string_sql(column: sa.Column, type_: Any, k: str, rows: int) -> str:
    length = getattr(type_, "length", None)
    if length and len(f"{column.name}-{rows}") > length:
        return f"right(lpad(({k})::text, {length}, '0'), {length})"  # distinct while the numbers fit
    return f"({_literal(column.name + '-')} || ({k}))"


def _bytes_of(n: str) -> str:
    return f"lpad(to_hex((({n}) & 255)::int), 2, '0')"


# One generator per type, in the order isinstance must try them (SmallInteger
# before Integer, Float before Numeric): the Python value for row ``i``, and the
# SQL expression over the row number ``k`` that gives the same value inside the
# server (a table is filled by one INSERT ... SELECT; row by row from Python when
# that cannot be done). Values are distinct for distinct rows where the type allows.
GENERATORS: list[tuple[tuple[type, ...], Callable[..., Any], Callable[..., str | None]]] = [
    ((sa.Enum,),
     lambda col, t, i: _labels(t)[i % len(_labels(t))] if _labels(t) else _UNSUPPORTED,
     lambda col, t, k, rows: f"(ARRAY[{', '.join(map(_literal, _labels(t)))}])[({k}) % {len(_labels(t))} + 1]" if _labels(t) else None),
    ((sa.Boolean,), lambda col, t, i: i % 2 == 0, lambda col, t, k, rows: f"(({k}) % 2 = 0)"),
    ((sa.SmallInteger,), lambda col, t, i: (i % 32000) + 1, lambda col, t, k, rows: f"(({k}) % 32000 + 1)"),
    ((sa.Integer,), lambda col, t, i: i + 1, lambda col, t, k, rows: f"(({k}) + 1)"),
    ((sa.Float,), lambda col, t, i: i + 0.5, lambda col, t, k, rows: f"(({k}) + 0.5)"),
    ((sa.Numeric,),
     lambda col, t, i: decimal.Decimal((i + 1) % (10 ** _digits(t))),
     lambda col, t, k, rows: f"((({k}) + 1) % {10 ** _digits(t)})"),
    ((sa.DateTime,),
     lambda col, t, i: (EPOCH + dt.timedelta(hours=i)).replace(tzinfo=dt.timezone.utc if getattr(t, "timezone", False) else None),
     lambda col, t, k, rows: (f"(timestamptz '{EPOCH:%Y-%m-%d %H:%M:%S}+00'" if getattr(t, "timezone", False) else f"(timestamp '{EPOCH:%Y-%m-%d %H:%M:%S}'") + f" + ({k}) * interval '1 hour')"),
    ((sa.Date,), lambda col, t, i: EPOCH.date() + dt.timedelta(days=i), lambda col, t, k, rows: f"(date '{EPOCH:%Y-%m-%d}' + ({k})::int)"),
    ((sa.Time,), lambda col, t, i: dt.time(i % 24, i % 60), lambda col, t, k, rows: f"make_time((({k}) % 24)::int, (({k}) % 60)::int, 0)"),
    ((sa.Interval,), lambda col, t, i: dt.timedelta(minutes=i + 1), lambda col, t, k, rows: f"((({k}) + 1) * interval '1 minute')"),
    ((sa.Uuid, postgresql.UUID),
     lambda col, t, i: uuid.UUID(int=i + 1) if getattr(t, "as_uuid", True) else str(uuid.UUID(int=i + 1)),
     lambda col, t, k, rows: f"lpad(to_hex(({k}) + 1), 32, '0')::uuid"),
    ((postgresql.JSON, postgresql.JSONB, sa.JSON), lambda col, t, i: {"n": i}, lambda col, t, k, rows: f"json_build_object('n', {k})"),
    ((postgresql.ARRAY,), _array, _array_sql),
    ((sa.LargeBinary,), lambda col, t, i: i.to_bytes(4, "big"), lambda col, t, k, rows: f"int4send((({k}) % 2147483648)::int)"),
    ((postgresql.INET, postgresql.CIDR),
     lambda col, t, i: f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
     lambda col, t, k, rows: f"('10.' || ((({k}) >> 16) & 255) || '.' || ((({k}) >> 8) & 255) || '.' || (({k}) & 255))"),
    ((postgresql.MACADDR,),
     lambda col, t, i: "08:00:2b:%02x:%02x:%02x" % ((i >> 16) & 255, (i >> 8) & 255, i & 255),
     lambda col, t, k, rows: f"('08:00:2b:' || {_bytes_of(f'({k}) >> 16')} || ':' || {_bytes_of(f'({k}) >> 8')} || ':' || {_bytes_of(k)})"),
    ((sa.String,), lambda col, t, i: _text(col.name, i, getattr(t, "length", None)), _string_sql),  # Text, VARCHAR, CHAR
]


def value_for(column: sa.Column, type_: Any, i: int) -> Any:
    """A value of ``type_`` for row ``i`` (distinct for distinct ``i`` where the type allows)."""
    for types, python, _ in GENERATORS:
        if isinstance(type_, types):
            return python(column, type_, i)
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
    """Insert ``rows`` generated rows into every table of ``url``; returns the counts.

    Each table is filled by one ``INSERT ... SELECT ... FROM generate_series``
    computing values of the same kinds as :func:`value_for` inside the server
    (a million rows in seconds, for db-rehearse-prod's ``ROWS``); a table with
    a type that has no SQL generator, or whose constraints refuse some of the
    rows, is filled row by row from Python instead, with a note.
    """
    counts: dict[str, int] = {}
    with connect(url) as conn:
        metadata = sa.MetaData()
        metadata.reflect(conn)
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            filled = _fill_table_sql(conn, table, rows, notes)
            counts[table.name] = filled if filled is not None else _fill_table(conn, table, rows, notes)
        conn.commit()
    return counts


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def sql_value(column: sa.Column, type_: Any, k: str, rows: int) -> str | None:
    """An SQL expression over the row number ``k`` giving :func:`value_for`'s value; None when there is none."""
    for types, _, sql in GENERATORS:
        if isinstance(type_, types):
            return sql(column, type_, k, rows)
    return None


def unique_columns(table: sa.Table) -> set[str]:
    """Columns under the primary key, a unique constraint or a unique index: they get distinct values."""
    unique = {c.name for c in table.primary_key.columns}
    for constraint in table.constraints:
        if isinstance(constraint, sa.UniqueConstraint):
            unique |= {c.name for c in constraint.columns}
    for index in table.indexes:
        if index.unique:
            unique |= {c.name for c in index.columns}
    return unique


def _fill_table_sql(conn: sa.Connection, table: sa.Table, rows: int, notes: list[str]) -> int | None:
    """Fill ``table`` with one INSERT ... SELECT over generate_series; None when Python must do it."""
    quote = conn.dialect.identifier_preparer.quote
    unique = unique_columns(table)
    joins: list[str] = []
    fk_exprs: dict[str, str] = {}
    for j, fk in enumerate(table.foreign_key_constraints):
        referred = fk.referred_table
        columns = list(fk.columns)
        available = 0
        if referred is not table:
            parent = conn.dialect.identifier_preparer.format_table(referred)
            available = conn.execute(sa.text(f"select count(*) from (select 1 from {parent} limit {rows * 4}) x")).scalar() or 0
        k = "g.i" if any(c.name in unique for c in columns) else "(g.i / 2)"
        if available:
            cols = ", ".join(quote(e.column.name) for e in fk.elements)
            joins.append(f"left join (select {cols}, row_number() over () - 1 as rn from {parent} limit {rows * 4}) p{j} on p{j}.rn = {k} % {available}")
        for idx, column in enumerate(columns):
            if not available:
                if not column.nullable:
                    notes.append(f"table {table.name} left empty: no rows to reference for {column.name}")
                    return 0
                fk_exprs[column.name] = "NULL"
                continue
            ref = f"p{j}.{quote(fk.elements[idx].column.name)}"
            fk_exprs[column.name] = f"(CASE WHEN g.i % 4 = 3 THEN NULL ELSE {ref} END)" if column.nullable else ref
    names, exprs = [], []
    for column in table.columns:
        k = "g.i" if column.name in unique else "(g.i / 2)"
        if column.name in fk_exprs:
            expr = fk_exprs[column.name]
        elif _generated(column):
            continue
        else:
            value = sql_value(column, column.type, k, rows)
            if value is None:
                if column.nullable:
                    expr = "NULL"
                elif column.server_default is not None:
                    continue
                else:
                    return None  # Python says which column has no generator
            else:
                try:
                    typed = column.type.compile(dialect=conn.dialect)
                except Exception:  # noqa: BLE001 - a reflected type SQLAlchemy cannot spell: Python fills it
                    return None
                expr = f"CAST({value} AS {typed})"
                if column.nullable and not column.primary_key:
                    expr = f"(CASE WHEN g.i % 4 = 3 THEN NULL ELSE {expr} END)"
        names.append(quote(column.name))
        exprs.append(expr)
    target = conn.dialect.identifier_preparer.format_table(table)
    columns_sql = f"({', '.join(names)}) " if names else ""
    select = f"SELECT {', '.join(exprs)}" if exprs else "SELECT"
    sql = f"INSERT INTO {target} {columns_sql}{select} FROM generate_series(0, {rows - 1}) AS g(i) {' '.join(joins)}"
    if not names:
        sql = f"INSERT INTO {target} SELECT FROM generate_series(0, {rows - 1}) AS g(i)"
    try:
        with conn.begin_nested():
            return conn.exec_driver_sql(sql.replace("%", "%%")).rowcount
    except sa.exc.DBAPIError as exc:
        # Row by row from Python instead (slow for ROWS=1000000): say why, once per table.
        first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None and str(exc.orig).strip() else type(exc).__name__
        notes.append(f"{table.name}: filled row by row (one INSERT ... SELECT was refused: {first})")
        return None


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
    unique = unique_columns(table)
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


def plan(workspace: Workspace, notes: list[str]) -> tuple[list[Script], list[str]] | None:
    """The new revisions to rehearse and the revisions to fill rows at (their parents).

    None when there is no new revision (a note says why). A changed old
    revision below a new one is applied on the way to the parents. New
    revisions that start at base have nothing to hold rows until the first
    of them has run: it becomes the parent (run without data, noted) and the
    others are rehearsed.
    """
    chosen, described, note = new_revisions(workspace)
    if note:
        notes.append(note)
    if not chosen:
        notes.append(f"no new revision to rehearse ({described})")
        return None
    new_ids = {s.revision for s in chosen}
    parents = sorted({d for s in chosen for d in revision_ids(s.down_revision) if d not in new_ids})
    below: set[str] = set()
    for parent in parents:
        below |= workspace.ancestors(parent)
    chosen = [s for s in chosen if s.revision not in below]
    if not parents:
        first = chosen.pop(0)
        parents = [first.revision]
        notes.append(f"{first.revision} starts the history, so it ran on an empty database")
    return chosen, parents


def run(workspace: Workspace) -> CheckResult:
    """Fill a database at the parent of the new revisions with rows, then apply them."""
    result = CheckResult(NAME)
    planned = plan(workspace, result.notes)
    if planned is None:
        return result
    chosen, parents = planned
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
