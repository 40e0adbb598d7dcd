"""``db-cleanup``: delete rows older than a retention age, children before parents, in batches.

Policies live in ``pyproject.toml``::

    [tool.dbtasks.cleanup]
    older_than = "1 year"        # default age (OLDER_THAN overrides every policy)
    batch_size = 5000
    lock_timeout = "2s"
    orphans = ["tags"]           # parents removed once no row references them

    [tool.dbtasks.cleanup.tables]
    comments = "created_at"                                   # column, default age
    tasks = { column = "created_at", older_than = "2 years" }

The foreign keys are read from the catalog. A row of a policy table is doomed
when its column is older than the cutoff; a row of any table that references a
doomed row (``ON DELETE`` NO ACTION, RESTRICT or CASCADE) is doomed too, so it
is deleted - and counted - before its parent rather than left to fail or to
cascade unseen. ``SET NULL``/``SET DEFAULT`` references are left to PostgreSQL.
Tables are processed leaf first (children before parents), each in batches of
its own short transaction. The default is a dry run that only counts.
"""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from dbtasks import names
from dbtasks.config import Settings
from dbtasks.database import connection, describe
from dbtasks.data.tools import DataError, ProgressCallback, report
from dbtasks.errors import ConfigError, UsageError
from dbtasks.safety import guard

DELETE_FOLLOWS = {"a", "r", "c"}  # no action, restrict, cascade: the child row must go first


class CleanupError(DataError):
    """A cleanup could not be planned or a batch failed."""


@dataclasses.dataclass(frozen=True)
class Policy:
    table: str
    column: str
    older_than: str


@dataclasses.dataclass
class Step:
    """One table of the plan: why its rows go, and how many (counted, or deleted)."""

    table: str
    reason: str
    rows: int
    kept: int = 0  # rows of the table that stay


@dataclasses.dataclass
class CleanupResult:
    applied: bool
    steps: list[Step]
    cutoffs: dict[str, datetime]
    seconds: float

    @property
    def total(self) -> int:
        return sum(s.rows for s in self.steps)


@dataclasses.dataclass
class _FK:
    child: int
    parent: int
    child_cols: list[str]
    parent_cols: list[str]
    action: str


_UNITS = {
    "second": "seconds", "seconds": "seconds", "minute": "minutes", "minutes": "minutes", "hour": "hours", "hours": "hours",
    "day": "days", "days": "days", "week": "weeks", "weeks": "weeks", "month": "months", "months": "months", "year": "years", "years": "years",
}
_ISO = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?")
AGE_EXAMPLES = '"90 days", "6 months", "1 year" or ISO 8601 "P90D"'


def parse_age(text: object, origin: str = "OLDER_THAN") -> str:
    """A retention age as a PostgreSQL interval: a positive ``90 days``/``6 months``/``1 year`` or ISO 8601 ``P90D``.

    Anything else is refused in one line: ``abc``, ``1 fortnight``, ``-5 days``,
    ``0``, ``1 year ago`` (PostgreSQL would read that one as *minus* a year,
    putting the cutoff in the future and dooming every row).
    """
    raw = str(text).strip() if text is not None else ""
    bad = UsageError(f"{origin}={raw!r} is not a positive age", f"write {AGE_EXAMPLES}")
    iso = _ISO.fullmatch(raw.upper())
    if raw.upper().startswith("P") and iso:
        if not any(iso.groups()) or all(int(g or 0) == 0 for g in iso.groups()) or raw.upper().endswith("T"):
            raise bad
        return raw.upper()
    words = raw.lower().replace(",", " ").split()
    if not words or len(words) % 2:
        raise bad
    parts, total = [], 0
    for number, unit in zip(words[::2], words[1::2]):
        if not number.isdigit() or unit not in _UNITS:
            raise bad
        total += int(number)
        parts.append(f"{int(number)} {_UNITS[unit]}")
    if total == 0:
        raise bad
    return " ".join(parts)


def policies_from_settings(settings: Settings, older_than: str | None = None) -> tuple[list[Policy], list[str]]:
    """Policies and orphan tables from the settings (``[tool.dbtasks.cleanup]``); every age is checked here."""
    if older_than is not None:
        older_than = parse_age(older_than)
    default_age = older_than or (parse_age(settings.cleanup_older_than, "[tool.dbtasks.cleanup] older_than") if settings.cleanup_older_than else None)
    policies = []
    for table, spec in (settings.cleanup_tables or {}).items():
        if isinstance(spec, str):
            column, age = spec, None
        elif isinstance(spec, dict) and "column" in spec:
            column, age = spec["column"], spec.get("older_than")
        else:
            raise ConfigError(f"[tool.dbtasks.cleanup.tables] {table} needs a timestamp column", f'write {table} = "created_at" or {table} = {{ column = "created_at", older_than = "1 year" }}')
        if age and not older_than:
            age = parse_age(age, f"[tool.dbtasks.cleanup.tables] {table} older_than")
        age = older_than or age or default_age
        if not age:
            raise ConfigError(f"no retention age for table {table}", f"run `{names.command('db-cleanup', OLDER_THAN='1 year')}` or set older_than in [tool.dbtasks.cleanup]")
        policies.append(Policy(table, str(column), str(age)))
    return policies, list(settings.cleanup_orphans)


def _catalog(conn: sa.Connection) -> tuple[dict[int, str], list[_FK]]:
    relnames = dict(conn.execute(sa.text(
        "select c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) from pg_class c "
        "join pg_namespace n on n.oid = c.relnamespace where c.relkind in ('r', 'p') "
        "and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'"
    )).all())
    fks = []
    for row in conn.execute(sa.text(
        "select con.conrelid, con.confrelid, con.confdeltype, "
        "array(select quote_ident(attname) from unnest(con.conkey) with ordinality k(n, o) join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k.n order by k.o), "
        "array(select quote_ident(attname) from unnest(con.confkey) with ordinality k(n, o) join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.n order by k.o) "
        "from pg_constraint con where con.contype = 'f'"
    )):
        if row[0] in relnames and row[1] in relnames:
            fks.append(_FK(row[0], row[1], list(row[3]), list(row[4]), row[2]))
    return relnames, fks


def _oid(conn: sa.Connection, table: str) -> int:
    """The table a policy names (``name`` or ``schema.name``, quoted as in SQL when needed)."""
    try:
        oid = conn.execute(sa.text("select to_regclass(:t)::oid"), {"t": table}).scalar()
    except DBAPIError:  # not even a name: "x; drop table y", 'a"b', "a.b.c.d"
        conn.rollback()
        raise ConfigError(
            f"cleanup policy names table {table!r}, which is not a table name",
            'fix [tool.dbtasks.cleanup.tables]: write the table as name or schema.name (quote a name with odd characters: \'"Odd Name"\')',
        ) from None
    if oid is None:
        raise ConfigError(f"cleanup policy names table {table!r}, which does not exist", "fix [tool.dbtasks.cleanup.tables]")
    return int(oid)


# The column types a retention age can be compared with.
TIME_TYPES = ("timestamp with time zone", "timestamp without time zone", "date")


class _Planner:
    def __init__(self, relnames: dict[int, str], fks: list[_FK], own: dict[int, tuple[str, str]], orphans: set[int]):
        self.relnames, self.fks, self.own, self.orphans = relnames, fks, own, orphans
        self.counter = 0

    def alias(self) -> str:
        self.counter += 1
        return f"_d{self.counter}"

    def affected(self) -> set[int]:
        result = set(self.own) | set(self.orphans)
        changed = True
        while changed:
            changed = False
            for fk in self.fks:
                if fk.parent in result and fk.action in DELETE_FOLLOWS and fk.child not in result and fk.child != fk.parent:
                    result.add(fk.child)
                    changed = True
        return result

    def doomed(self, oid: int, alias: str, visiting: frozenset[int]) -> str:
        """SQL true for rows of ``oid`` (as ``alias``) this cleanup deletes."""
        visiting = visiting | {oid}
        terms = []
        if oid in self.own:
            column, param = self.own[oid]
            terms.append(f"{alias}.{column} < :{param}")
        for fk in self.fks:
            if fk.child == oid and fk.action in DELETE_FOLLOWS and fk.parent not in visiting:
                inner = self.doomed(fk.parent, p := self.alias(), visiting)
                if inner != "false":
                    join = " and ".join(f"{p}.{pc} = {alias}.{cc}" for pc, cc in zip(fk.parent_cols, fk.child_cols))
                    terms.append(f"exists (select 1 from {self.relnames[fk.parent]} as {p} where {join} and ({inner}))")
        if oid in self.orphans:
            clauses = []
            for fk in self.fks:
                if fk.parent == oid:
                    c = self.alias()
                    join = " and ".join(f"{c}.{cc} = {alias}.{pc}" for pc, cc in zip(fk.parent_cols, fk.child_cols))
                    child_doomed = self.doomed(fk.child, c, visiting) if fk.child not in visiting else "false"
                    clauses.append(f"not exists (select 1 from {self.relnames[fk.child]} as {c} where {join} and not ({child_doomed}))")
            if clauses:
                terms.append("(" + " and ".join(clauses) + ")")
        return " or ".join(f"({t})" for t in terms) if terms else "false"

    def order(self, tables: set[int]) -> list[int]:
        """Children before parents; a foreign-key cycle between tables cannot be ordered."""
        remaining = set(tables)
        ordered: list[int] = []
        while remaining:
            # A table is ready when no remaining table (other than itself) references it.
            ready = sorted(
                (t for t in remaining if not any(fk.parent == t and fk.child in remaining and fk.child != t for fk in self.fks)),
                key=lambda t: self.relnames[t],
            )
            if not ready:
                cycle = ", ".join(sorted(self.relnames[t] for t in remaining))
                raise CleanupError(f"the foreign keys between {cycle} form a cycle, so there is no leaf-first order", "clean those tables with a backfill script instead")
            ordered.extend(ready)
            remaining -= set(ready)
        return ordered


def cleanup(
    settings: Settings,
    older_than: str | None = None,
    apply: bool = False,
    *,
    policies: list[Policy] | None = None,
    orphans: list[str] | None = None,
    confirm: str | None = None,
    ask=None,
    progress: ProgressCallback | None = None,
    batch_size: int | None = None,
    lock_timeout: str | None = None,
    all_rows: bool = False,
) -> CleanupResult:
    """Count (default) or delete (``apply``) the rows the retention policies doom, leaf first.

    ``policies`` and ``orphans`` default to ``[tool.dbtasks.cleanup]``;
    ``older_than`` (a PostgreSQL interval such as ``"1 year"``) overrides every
    policy's age.
    """
    configured, conf_orphans = policies_from_settings(settings, older_than)
    if policies is None:
        policies = configured
    elif older_than:
        policies = [dataclasses.replace(p, older_than=parse_age(older_than)) for p in policies]
    else:
        policies = [dataclasses.replace(p, older_than=parse_age(p.older_than, f"older_than of {p.table}")) for p in policies]
    orphans = conf_orphans if orphans is None else orphans
    batch_size = batch_size or settings.cleanup_batch_size
    lock_timeout = lock_timeout or settings.cleanup_lock_timeout
    if not policies and not orphans:
        raise ConfigError(
            "no retention policies are configured",
            'add [tool.dbtasks.cleanup.tables] with e.g. comments = "created_at" to pyproject.toml',
        )
    if apply:
        guard(settings, "delete old rows", confirm, ask)
    started = time.monotonic()
    with connection(settings) as conn:
        relnames, fks = _catalog(conn)
        own: dict[int, tuple[str, str]] = {}
        cutoffs: dict[str, datetime] = {}
        params: dict[str, Any] = {}
        for i, policy in enumerate(policies):
            oid = _oid(conn, policy.table)
            found = conn.execute(
                sa.text("select quote_ident(attname), format_type(atttypid, null) from pg_attribute where attrelid = :o and attname = :c and attnum > 0 and not attisdropped"),
                {"o": oid, "c": policy.column},
            ).first()
            if not found:
                raise ConfigError(f"cleanup policy: table {policy.table} has no column {policy.column!r}", "fix [tool.dbtasks.cleanup.tables]")
            exists, column_type = found
            if column_type not in TIME_TYPES:
                raise ConfigError(
                    f"cleanup policy: column {policy.table}.{policy.column} is {column_type}, not a timestamp or date, so rows cannot be aged by it",
                    "fix [tool.dbtasks.cleanup.tables]: name a timestamp or date column such as created_at",
                )
            try:
                cutoff, past = conn.execute(sa.text("select now() - cast(:a as interval), now() - cast(:a as interval) < now()"), {"a": policy.older_than}).one()
            except DBAPIError:
                raise UsageError(f"{policy.older_than!r} is not a PostgreSQL interval", f"write an age such as \"1 year\" or \"90 days\": `{names.command('db-cleanup', OLDER_THAN='90 days')}`") from None
            finally:
                conn.rollback()
            if not past:
                raise UsageError(f"the age {policy.older_than!r} of {policy.table} puts the cutoff at {cutoff}, not in the past; nothing was deleted", f"write {AGE_EXAMPLES}")
            own[oid] = (exists, f"cut{i}")
            params[f"cut{i}"] = cutoff
            cutoffs[relnames[oid]] = cutoff
        orphan_oids = {_oid(conn, t) for t in orphans}
        planner = _Planner(relnames, fks, own, orphan_oids)
        tables = planner.order(planner.affected())
        predicates = {oid: planner.doomed(oid, "_t", frozenset()) for oid in tables}

        def reason(oid: int) -> str:
            if oid in own:
                return f"{own[oid][0]} older than cutoff"
            if oid in orphan_oids:
                return "no longer referenced"
            return "references deleted rows"

        counts: dict[int, int] = {}
        totals: dict[int, int] = {}
        for oid in tables:
            counts[oid], totals[oid] = (int(v) for v in conn.execute(
                sa.text(f"select count(*) filter (where {predicates[oid]}), count(*) from {relnames[oid]} as _t"), params
            ).one())
        conn.rollback()
        everything = [relnames[oid] for oid in tables if counts[oid] and counts[oid] == totals[oid]]
        if not apply:
            steps = [Step(relnames[oid], reason(oid) + ("; every row: APPLY needs ALL_ROWS=1" if relnames[oid] in everything and not all_rows else ""), counts[oid], totals[oid] - counts[oid]) for oid in tables]
            return CleanupResult(False, steps, cutoffs, time.monotonic() - started)
        if everything and not all_rows:
            first = everything[0]
            n = next(counts[o] for o in tables if relnames[o] == first)
            raise UsageError(
                f"the retention policies would delete every row of {', '.join(everything)} ({first}: all {n}); nothing was deleted",
                "check OLDER_THAN, or if that is meant, add ALL_ROWS=1 (--all-rows)",
            )

        steps: list[Step] = []
        for oid in tables:
            table = relnames[oid]
            deleted = 0
            report(progress, f"cleanup {table}", 0, counts[oid], "rows")
            sql = sa.text(
                f"delete from {table} where ctid = any(array(select _t.ctid from {table} as _t where {predicates[oid]} limit :_limit))"
            )
            while True:
                try:
                    with conn.begin():
                        conn.execute(sa.text("select set_config('lock_timeout', :v, true)"), {"v": lock_timeout})
                        n = conn.execute(sql, {**params, "_limit": batch_size}).rowcount
                except DBAPIError as exc:
                    first = str(exc.orig).strip().splitlines()[0]
                    raise CleanupError(
                        f"cleanup of {table} failed on {describe(settings.url)} after {deleted} row(s): {first}",
                        "rows deleted so far stay deleted; fix the cause and run again",
                    ) from None
                deleted += n
                report(progress, f"cleanup {table}", deleted, max(counts[oid], deleted), "rows")
                if n < batch_size:
                    break
            steps.append(Step(table, reason(oid), deleted, max(totals[oid] - deleted, 0)))
    return CleanupResult(True, steps, cutoffs, time.monotonic() - started)
