"""Masking rules: personal data is replaced inside the scratch database, before anything reaches a developer.

Rules map ``table.column`` (or ``schema.table.column``) to a strategy, in
``[tool.dbtasks.masking]`` of pyproject.toml or in a TOML file named by
``masking_file`` (its ``[masking]`` table, or its top-level keys)::

    [tool.dbtasks.masking]
    "users.email" = "email"
    "users.name" = "name"
    "users.id" = "hash"
    "projects.owner_id" = "hash"

Every strategy is SQL run on the server (each masked table written anew, or
updated in place where a foreign key references it; all in one transaction):
no row leaves the server, and the same value with the same
``masking_seed`` always masks to the same result, so joins on masked columns
still match and two copies agree. With another seed, the results differ.

=================  ============================================================
``null``           NULL (refused on a NOT NULL column)
``fixed:<value>``  that value, cast to the column's type
``hash``           text: md5 of seed and value (32 hex characters, cut to the
                   column's length); integer: a keyed permutation of the value
                   (a bijection, so keys stay unique and foreign keys match);
                   uuid: the md5 as a uuid
``email``          ``user_<16 hex>@example.invalid``
``name``           a made-up "First Last" picked by the hash
``phone``          ``+1-555-<7 digits>`` picked by the hash
``text:<n>``       n characters of hash
``keep``           unchanged (says the column was looked at: check-masking is quiet)
``sql:<expr>``     an SQL expression over the row's columns
=================  ============================================================

NULL stays NULL under every strategy but ``fixed`` and ``sql``. Rules are
validated against the schema they are applied to: an unknown table, column or
strategy, ``null`` on a NOT NULL column, a text strategy on a number, or a
strategy that cannot keep a unique column unique is one line (exit 2).
So is a foreign key whose two columns have different rules (no rule counts
as ``keep``): the copy would hold rows referencing keys that no longer exist.
Each rule's SQL is then tried on the database (planned, never run on a row),
so a typo in ``sql:`` or a ``fixed:`` value the column's type refuses is
one line too, before any row changes.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from dbtasks.config import Settings, project_name, shown_path
from dbtasks.database import connect, quote_ident
from dbtasks.errors import ConfigError, DbtasksError, read_text, redact, register_secret

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STRATEGIES = ("null", "fixed:<value>", "hash", "email", "name", "phone", "text:<n>", "keep", "sql:<expression>")
_NAMES = {s.split(":")[0] for s in STRATEGIES}
_WITH_ARGUMENT = {"fixed", "text", "sql"}
_TEXT_ONLY = {"email", "name", "phone", "text"}
_NOT_UNIQUE = {"fixed", "name", "phone"}  # strategies that would make a unique column repeat values
EMAIL_LENGTH = len("user_") + 16 + len("@example.invalid")

FIRST = ("Alex", "Sam", "Robin", "Kim", "Jordan", "Taylor", "Morgan", "Casey", "Jamie", "Riley", "Avery", "Quinn", "Charlie", "Drew", "Eli", "Noa")
LAST = ("Smith", "Jones", "Miller", "Garcia", "Brown", "Davis", "Lopez", "Wilson", "Moore", "Clark", "Lewis", "Young", "King", "Hill", "Green", "Baker")


class MaskingError(DbtasksError):
    """A masking rule is malformed or does not fit the schema (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """One masking rule as written: ``key = "strategy[:argument]"``."""

    key: str
    schema: str | None
    table: str
    column: str
    strategy: str
    argument: str | None
    origin: str  # where it was written, for messages

    @property
    def text(self) -> str:
        return self.strategy + (f":{self.argument}" if self.argument is not None else "")


@dataclasses.dataclass
class Column:
    """A column of the database the rules are applied to."""

    schema: str
    table: str
    name: str
    type: str  # format_type(), e.g. character varying(255)
    category: str  # pg_type.typcategory: S string, N numeric, U user (uuid), I network ...
    base: str  # pg_type.typname: int8, varchar, uuid ...
    length: int | None  # character_maximum_length
    not_null: bool
    unique: bool  # alone in a primary key or a unique constraint/index

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.name}"


@dataclasses.dataclass
class MaskReport:
    """What :func:`apply` did: rows updated per table, and notes (the seed's fallback)."""

    tables: dict[str, int] = dataclasses.field(default_factory=dict)
    columns: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)


# -- reading the rules -----------------------------------------------------------------


def _parse(key: Any, value: Any, origin: str) -> Rule:
    where = f"masking rule {key!r} in {origin}"
    if not isinstance(key, str) or not isinstance(value, str):
        raise MaskingError(f"{where} must map a \"table.column\" string to a strategy string", f"e.g. \"users.email\" = \"email\"; strategies: {', '.join(STRATEGIES)}")
    parts = key.split(".")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise MaskingError(f"{where} names no column", "write it as \"table.column\" or \"schema.table.column\"")
    schema, table, column = ([None] + [p.strip() for p in parts])[-3:]
    name, sep, argument = value.strip().partition(":")
    name = name.strip().lower()
    if name not in _NAMES:
        raise MaskingError(f"{where} has an unknown strategy {value!r}", f"use one of {', '.join(STRATEGIES)}")
    if name in _WITH_ARGUMENT and not sep:
        raise MaskingError(f"{where}: {name} needs an argument", f"write it as {next(s for s in STRATEGIES if s.startswith(name + ':'))}")
    if name not in _WITH_ARGUMENT and sep:
        raise MaskingError(f"{where}: {name} takes no argument", f"write it as \"{name}\"")
    if name == "text" and not (argument.strip().isdigit() and int(argument) > 0):
        raise MaskingError(f"{where}: text needs a length of 1 or more", "write it as \"text:20\"")
    if name == "sql" and not argument.strip():
        raise MaskingError(f"{where}: sql needs an expression", "write it as \"sql:<expression over the row's columns>\"")
    return Rule(key, schema, table, column, name, argument if sep else None, origin)


def load_rules(settings: Settings) -> list[Rule]:
    """The rules of ``[tool.dbtasks.masking]`` and of ``masking_file``; malformed ones are one-line errors."""
    sources: list[tuple[str, dict]] = []
    if settings.masking:
        sources.append(("[tool.dbtasks.masking]" if settings.sources.get("masking") == "pyproject" else "DBTASKS_MASKING", settings.masking))
    if settings.masking_file:
        path = settings.path(settings.masking_file)
        if not path.is_file():
            raise ConfigError(f"masking file {shown_path(path)} does not exist", "create it or fix DBTASKS_MASKING_FILE / masking_file")
        try:
            data = tomllib.loads(read_text(path))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"masking file {shown_path(path)} is not valid TOML ({exc})", "fix the file") from None
        table = data.get("masking", data)
        if not isinstance(table, dict):
            raise ConfigError(f"[masking] in {shown_path(path)} is not a table", "write the rules as \"table.column\" = \"strategy\"")
        sources.append((shown_path(path), table))
    rules: dict[tuple, Rule] = {}
    for origin, table in sources:
        for key, value in table.items():
            rule = _parse(key, value, origin)
            ident = (rule.schema, rule.table, rule.column)
            if ident in rules and rules[ident].text != rule.text:
                raise MaskingError(f"column {key!r} has two masking rules: {rules[ident].text!r} in {rules[ident].origin} and {rule.text!r} in {origin}", "keep one of them")
            rules[ident] = rule
    return list(rules.values())


def seed(settings: Settings) -> tuple[str, str | None]:
    """The key of every hash, and a note when it is the fallback (the project's name)."""
    if settings.masking_seed:
        register_secret(settings.masking_seed)
        return settings.masking_seed, None
    return project_name(settings.project_dir), "masking_seed is not set, so hashes are keyed by the project's name; set DBTASKS_MASKING_SEED (kept out of the repository) so masked values cannot be guessed"


# -- the schema -----------------------------------------------------------------------

_COLUMNS = """
select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory, t.typname,
       information_schema._pg_char_max_length(a.atttypid, a.atttypmod), a.attnotnull,
       exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisunique and i.indnkeyatts = 1
               and i.indkey[0] = a.attnum and i.indpred is null)
from pg_attribute a
join pg_class c on c.oid = a.attrelid
join pg_namespace n on n.oid = c.relnamespace
join pg_type t on t.oid = a.atttypid
where c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
  and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
order by 1, 2, a.attnum
"""

_FOREIGN_KEYS = """
select sn.nspname, sc.relname, sa.attname, tn.nspname, tc.relname, ta.attname
from pg_constraint k
join pg_class sc on sc.oid = k.conrelid join pg_namespace sn on sn.oid = sc.relnamespace
join pg_class tc on tc.oid = k.confrelid join pg_namespace tn on tn.oid = tc.relnamespace
join lateral unnest(k.conkey, k.confkey) as u(s, t) on true
join pg_attribute sa on sa.attrelid = k.conrelid and sa.attnum = u.s
join pg_attribute ta on ta.attrelid = k.confrelid and ta.attnum = u.t
where k.contype = 'f'
order by 1, 2, 3, 4, 5, 6
"""


def columns(conn: sa.Connection) -> list[Column]:
    """Every column of every user table."""
    return [Column(*row) for row in conn.execute(sa.text(_COLUMNS))]


def foreign_keys(conn: sa.Connection) -> list[tuple[str, str]]:
    """(referencing, referenced) column pairs as ``schema.table.column``."""
    return [(f"{a}.{b}.{c}", f"{d}.{e}.{f}") for a, b, c, d, e, f in conn.execute(sa.text(_FOREIGN_KEYS))]


def _search_path(conn: sa.Connection) -> list[str]:
    return list(conn.execute(sa.text("select unnest(current_schemas(false))")).scalars())


def resolve(rules: list[Rule], cols: list[Column], search_path: list[str]) -> list[tuple[Rule, Column]]:
    """Each rule with its column; an unknown table or column, or a rule the column cannot take, is a :class:`MaskingError`."""
    by_table: dict[tuple[str, str], dict[str, Column]] = {}
    for col in cols:
        by_table.setdefault((col.schema, col.table), {})[col.name] = col
    out = []
    for rule in rules:
        where = f"masking rule {rule.key!r} in {rule.origin}"
        if rule.schema:
            table = by_table.get((rule.schema, rule.table))
        else:
            table = next((by_table[(s, rule.table)] for s in search_path if (s, rule.table) in by_table), None)
        if table is None:
            known = sorted({t for _, t in by_table})
            raise MaskingError(f"{where}: no table {rule.table!r} in the database", f"fix the rule; tables: {', '.join(known) or 'none'}")
        col = table.get(rule.column)
        if col is None:
            raise MaskingError(f"{where}: table {rule.table!r} has no column {rule.column!r}", f"fix the rule; its columns: {', '.join(table)}")
        _fits(rule, col, where)
        out.append((rule, col))
    return out


def _fits(rule: Rule, col: Column, where: str) -> None:
    s = rule.strategy
    if s == "null" and col.not_null:
        raise MaskingError(f"{where}: column {col.table}.{col.name} is NOT NULL, so it cannot be masked with null", "use fixed:<value>, hash or another strategy")
    if s in _TEXT_ONLY and col.category != "S":
        raise MaskingError(f"{where}: {s} makes text, but {col.table}.{col.name} is {col.type}", "use hash, fixed:<value> or sql:<expression> for it")
    if s == "hash" and not (col.category == "S" or col.base in ("int2", "int4", "int8", "uuid")):
        raise MaskingError(f"{where}: hash works on text, integer and uuid columns, not on {col.type} ({col.table}.{col.name})", "use fixed:<value>, null or sql:<expression> for it")
    if s in _NOT_UNIQUE and col.unique:
        raise MaskingError(f"{where}: {col.table}.{col.name} is unique, and {s} would repeat values", "use hash or email, which keep distinct values distinct")
    if s == "email" and col.length is not None and col.length < EMAIL_LENGTH:
        raise MaskingError(f"{where}: {col.table}.{col.name} is {col.type}, too short for a masked email ({EMAIL_LENGTH} characters)", "use hash or text:<n>")


def shown(qualified: str) -> str:
    """``schema.table.column`` as a rule would name it: the schema only when it is not public."""
    return qualified[len("public."):] if qualified.startswith("public.") else qualified


def check_foreign_keys(resolved: list[tuple[Rule, Column]], fks: list[tuple[str, str]]) -> None:
    """A foreign key whose two columns get different rules is a :class:`MaskingError`.

    The copy would keep its rows and its declared constraint while the values
    no longer match (MODE=schema swaps in orphaned rows, MODE=full fails at the
    constraint without saying why), so it is refused before anything changes.
    No rule is ``keep``.
    """
    rules = {col.qualified: rule for rule, col in resolved}
    clashes = [(a, b) for a, b in fks if (rules[a].text if a in rules else "keep") != (rules[b].text if b in rules else "keep")]
    if not clashes:
        _check_hash_widths(resolved, fks)
        return
    referencing, referenced = clashes[0]

    def told(qualified: str) -> str:
        rule = rules.get(qualified)
        return f"{shown(qualified)} is {rule.text!r} (in {rule.origin})" if rule else f"{shown(qualified)} has no rule (kept as is)"

    # The remedy copies the masked side's rule to the other side (the referenced key's, when both are masked).
    source, target = (referenced, referencing) if referenced in rules and rules[referenced].text != "keep" else (referencing, referenced)
    more = f" ({len(clashes) - 1} more foreign key(s) like it)" if len(clashes) > 1 else ""
    raise MaskingError(
        f"foreign key {shown(referencing)} -> {shown(referenced)} is masked differently: {told(referenced)}, {told(referencing)}, "
        f"so the copy's {shown(referencing)} would no longer match {shown(referenced)}{more}",
        f"give both columns the same rule, e.g. \"{shown(target)}\" = \"{rules[source].text}\"",
    )


def _hash_width(col: Column) -> str:
    """What ``hash`` makes of a column's values: the same width on both sides of a key, or they stop matching."""
    if col.base in ("int2", "int4", "int8"):
        return f"{14 if col.base == 'int2' else 30}-bit permutation"
    if col.base == "uuid":
        return "uuid"
    return f"{min(32, col.length or 32)} hex characters"


def _check_hash_widths(resolved: list[tuple[Rule, Column]], fks: list[tuple[str, str]]) -> None:
    """``hash`` on both sides of a foreign key whose columns differ in width (smallint and integer,
    varchar(20) and text) gives values that no longer match: a :class:`MaskingError`."""
    cols = {col.qualified: col for rule, col in resolved if rule.strategy == "hash"}
    for referencing, referenced in fks:
        if referencing in cols and referenced in cols:
            a, b = _hash_width(cols[referencing]), _hash_width(cols[referenced])
            if a != b:
                raise MaskingError(
                    f"foreign key {shown(referencing)} -> {shown(referenced)}: hash makes a {a} of {cols[referencing].type} "
                    f"but a {b} of {cols[referenced].type}, so the copy's keys would no longer match",
                    "give both columns the same type, or mask both with the same sql:<expression>",
                )


# -- the SQL ------------------------------------------------------------------------

_INT_FUNCTION = """
create or replace function pg_temp.dbtasks_mask_int(v bigint, seed text, b int) returns bigint
language plpgsql immutable strict as $$
declare
  half int := b / 2;
  m bigint := (1::bigint << half) - 1;
  high bigint := v >> b;
  l bigint := (v & ((1::bigint << b) - 1)) >> half;
  r bigint := v & m;
  t bigint;
begin
  -- A 4-round Feistel network over the low b bits: a bijection, so distinct keys stay
  -- distinct; the high bits are kept, so the result fits the column's type.
  for i in 1..4 loop
    t := r;
    r := l # (('x' || substr(md5(seed || ':' || i || ':' || r), 1, 8))::bit(32)::bigint & m);
    l := t;
  end loop;
  return (high << b) | (l << half) | r;
end $$
"""


def _hex(value: str, param: str = ":seed") -> str:
    return f"md5({param} || ':' || ({value})::text)"


def _index(value: str, n: int) -> str:
    """1..n picked by the hash of ``value``."""
    return f"(1 + (('x' || substr({_hex(value)}, 1, 8))::bit(32)::bigint % {n}))::int"


def expression(rule: Rule, col: Column, params: dict, n: int) -> str | None:
    """The SQL expression that masks ``col``; None for keep. Values go into ``params``."""
    c = quote_ident(col.name)
    s = rule.strategy
    if s == "keep":
        return None
    if s == "null":
        return "NULL"
    if s == "fixed":
        params[f"fixed_{n}"] = rule.argument
        return f"CAST(:fixed_{n} AS {col.type})"
    if s == "sql":
        return f"({rule.argument})"
    if s == "hash":
        if col.base in ("int2", "int4", "int8"):
            # int4 and int8 share the 30-bit block, so a key and the bigint column referencing it match.
            return f"pg_temp.dbtasks_mask_int({c}, :seed, {14 if col.base == 'int2' else 30})::{col.type}"
        if col.base == "uuid":
            return f"{_hex(c)}::uuid"
        return f"left({_hex(c)}, {min(32, col.length or 32)})"
    if s == "email":
        return f"'user_' || left({_hex(c)}, 16) || '@example.invalid'"
    if s == "name":
        firsts = ", ".join(f"'{x}'" for x in FIRST)
        lasts = ", ".join(f"'{x}'" for x in LAST)
        text = f"(array[{firsts}])[{_index(c, len(FIRST))}] || ' ' || (array[{lasts}])[{_index('reverse(' + c + '::text)', len(LAST))}]"
        return f"left({text}, {col.length})" if col.length else text
    if s == "phone":
        return f"'+1-555-' || lpad(((('x' || substr({_hex(c)}, 1, 8))::bit(32)::bigint % 10000000))::text, 7, '0')"
    if s == "text":
        size = int(rule.argument)
        if col.length:
            size = min(size, col.length)
        return f"left(repeat({_hex(c)}, {size // 32 + 1}), {size})"
    raise AssertionError(s)  # pragma: no cover - _parse knows every strategy


# -- applying -------------------------------------------------------------------------


def _detail(exc: DBAPIError) -> str:
    """The database's message, first line, without secrets."""
    return redact(str(exc.orig).strip().splitlines()[0]) if exc.orig else "the database refused it"


def try_sql(conn: sa.Connection, resolved: list[tuple[Rule, Column]]) -> None:
    """Plan each rule's SQL on the database of ``conn``; one that fails is a :class:`MaskingError`.

    Each expression goes into the column of an empty temporary copy of its
    table, ``SELECT``-ed from the table with ``LIMIT 0``: no row is read or
    written, but the names, the types and the assignment to the column are
    checked, and constants are folded at planning, so a ``fixed:`` value the
    type refuses fails too. A savepoint rolled back at the end leaves the
    database and the caller's transaction as they were.
    """
    params: dict[str, Any] = {"seed": "dbtasks-try"}
    tries = [(rule, col, expression(rule, col, params, n)) for n, (rule, col) in enumerate(resolved)]
    tries = [t for t in tries if t[2] is not None]
    if not tries:
        return
    savepoint = conn.begin_nested()
    try:
        if any("dbtasks_mask_int" in e for _, _, e in tries):
            conn.execute(sa.text(_INT_FUNCTION))
        copies: dict[tuple[str, str], str] = {}
        for rule, col, expr in tries:
            qualified = f"{quote_ident(col.schema)}.{quote_ident(col.table)}"
            copy = copies.get((col.schema, col.table))
            if copy is None:
                copy = copies[(col.schema, col.table)] = f"pg_temp.dbtasks_mask_try_{len(copies)}"
                conn.execute(sa.text(f"CREATE TEMPORARY TABLE {copy} (LIKE {qualified})"))
            used = {k: v for k, v in params.items() if f":{k}" in expr}
            try:
                # The alias is the one _rewrite gives, so sql: expressions that name the table work alike.
                conn.execute(sa.text(f"INSERT INTO {copy} ({quote_ident(col.name)}) SELECT {expr} FROM {qualified} AS {quote_ident(col.table)} LIMIT 0"), used)
            except DBAPIError as exc:
                raise MaskingError(
                    f"masking rule {rule.key!r} in {rule.origin}: {rule.text!r} fails on {col.table}.{col.name} ({col.type}): {_detail(exc)}",
                    "fix the rule: sql: expressions name the row's columns, fixed: values must fit the column's type",
                ) from None
    finally:
        savepoint.rollback()


def validate(settings: Settings, conn: sa.Connection, rules: list[Rule] | None = None, try_it: bool = True) -> list[tuple[Rule, Column]]:
    """The rules resolved against the database of ``conn``, each with its column.

    Everything that would make the masking fail or break the copy is a
    :class:`MaskingError` here, before any row changes: a rule the schema
    cannot take, a foreign key masked differently on its two sides, SQL the
    database refuses. ``try_it=False`` reads the catalog only (the rules
    checked against a production database before it is dumped: no
    temporary table is made there).
    """
    rules = load_rules(settings) if rules is None else rules
    resolved = resolve(rules, columns(conn), _search_path(conn))
    check_foreign_keys(resolved, foreign_keys(conn))
    if try_it:
        try_sql(conn, resolved)
    return resolved


def apply(settings: Settings, url: URL, rules: list[Rule] | None = None, say: Callable[[str], None] | None = None) -> MaskReport:
    """Mask the database at ``url`` by the rules of ``settings``, every table in one transaction.

    Each masked table is written anew (its rows, masked, through a temporary
    table and back after a TRUNCATE) or, when another table's foreign key
    references it, updated in place and then rewritten with VACUUM FULL:
    either way no original value stays in the database's files.

    Meant for a scratch copy (dump-and-restore, a rehearsal on production
    data). Raises :class:`MaskingError` when a rule does not fit the schema
    or its SQL fails; then nothing is changed. Triggers and foreign-key
    checks are off during the updates (``session_replication_role =
    replica``, which needs a superuser) so keys masked on both sides of a
    foreign key can change together.
    """
    report = MaskReport()
    key, note = seed(settings)
    if note:
        report.notes.append(note)
    with connect(url) as conn:
        resolved = validate(settings, conn, rules)
        plan: dict[tuple[str, str], list[tuple[str, str]]] = {}
        params: dict[str, Any] = {"seed": key}
        for n, (rule, col) in enumerate(resolved):
            expr = expression(rule, col, params, n)
            if expr is not None:
                plan.setdefault((col.schema, col.table), []).append((col.name, expr))
        if not plan:
            return report
        superuser = conn.execute(sa.text("select rolsuper from pg_roles where rolname = current_user")).scalar()
        conn.rollback()  # end the reads' implicit transaction; the updates get their own
        table = column_list = ""
        updated: list[tuple[str, str]] = []  # tables masked in place: their files still hold the old row versions
        try:
            with conn.begin():
                if superuser:
                    conn.execute(sa.text("set local session_replication_role = replica"))
                if any("dbtasks_mask_int" in e for cols in plan.values() for _, e in cols):
                    conn.execute(sa.text(_INT_FUNCTION))
                for (schema, name), sets in plan.items():
                    table = f"{schema}.{name}"
                    column_list = ", ".join(c for c, _ in sets)
                    count = _rewrite(conn, schema, name, sets, params)
                    if count is None:
                        count = _update(conn, schema, name, sets, params)
                        updated.append((schema, name))
                    report.tables[table] = count
                    for c, e in sets:
                        if "dbtasks_mask_int" in e:
                            _follow_sequence(conn, schema, name, c)
                    report.columns += len(sets)
                    if say:
                        say(f"masked {column_list} of {table} ({count} rows)")
        except DBAPIError as exc:
            raise MaskingError(f"masking {column_list} of {table} failed: {_detail(exc)}", "fix the masking rule (sql: expressions and fixed: values must fit the column); nothing was changed") from None
    # An UPDATE leaves the original row versions (and their index entries) in the table's
    # files until the space is reused: rewrite each table masked in place, so no original
    # value stays in the database's files. (A rewritten table got new files already.)
    with connect(url, autocommit=True) as conn:
        for schema, name in updated:
            conn.execute(sa.text(f"VACUUM FULL {quote_ident(schema)}.{quote_ident(name)}"))
    return report


_REWRITABLE = """
select c.relkind = 'r'
   and not exists (select 1 from pg_inherits i where i.inhparent = c.oid)
   and not exists (select 1 from pg_constraint k where k.contype = 'f' and k.confrelid = c.oid and k.conrelid <> c.oid)
from pg_class c where c.oid = cast(:t as regclass)
"""

_INSERTABLE = """
select a.attname from pg_attribute a
where a.attrelid = cast(:t as regclass) and a.attnum > 0 and not a.attisdropped and a.attgenerated = ''
order by a.attnum
"""


def _rewrite(conn: sa.Connection, schema: str, name: str, sets: list[tuple[str, str]], params: dict) -> int | None:
    """Mask a table by writing it anew: its rows (masked) into a temporary table, TRUNCATE, and back.

    The table gets new files, so no original value stays behind and no VACUUM
    FULL is needed; a table truncated in the same transaction is loaded without
    WAL on a ``wal_level = minimal`` server (the local one), and a table whose
    indexes are not built yet (a restore that masks before its post-data)
    costs one pass. None when the table cannot be truncated alone (another
    table's foreign key references it; it has inheritance children; it is
    partitioned): the caller updates it in place.
    """
    qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
    if not conn.execute(sa.text(_REWRITABLE), {"t": qualified}).scalar():
        return None
    masked = dict(sets)
    cols = list(conn.execute(sa.text(_INSERTABLE), {"t": qualified}).scalars())
    select = ", ".join(masked.get(c, quote_ident(c)) for c in cols)
    used = {k: v for k, v in params.items() if f":{k}" in select}
    conn.execute(sa.text("DROP TABLE IF EXISTS pg_temp.dbtasks_mask_rows"))
    conn.execute(sa.text(f"CREATE TEMPORARY TABLE dbtasks_mask_rows ON COMMIT DROP AS SELECT * FROM ONLY {qualified}"))
    conn.execute(sa.text(f"TRUNCATE ONLY {qualified}"))
    # The alias keeps sql: expressions that name the table (users.email) working.
    result = conn.execute(
        sa.text(f"INSERT INTO {qualified} ({', '.join(quote_ident(c) for c in cols)}) OVERRIDING SYSTEM VALUE "
                f"SELECT {select} FROM pg_temp.dbtasks_mask_rows AS {quote_ident(name)}"),
        used,
    )
    conn.execute(sa.text("DROP TABLE pg_temp.dbtasks_mask_rows"))
    return result.rowcount


def _update(conn: sa.Connection, schema: str, name: str, sets: list[tuple[str, str]], params: dict) -> int:
    """Mask a table in place (one UPDATE); its files keep the old row versions until VACUUM FULL."""
    assignments = ", ".join(f"{quote_ident(c)} = {e}" for c, e in sets)
    used = {k: v for k, v in params.items() if f":{k}" in assignments}
    return conn.execute(sa.text(f"UPDATE {quote_ident(schema)}.{quote_ident(name)} SET {assignments}"), used).rowcount


def _follow_sequence(conn: sa.Connection, schema: str, table: str, column: str) -> None:
    """A hashed serial or identity key: move its sequence past the new values, so the next insert does not collide."""
    qualified = f"{quote_ident(schema)}.{quote_ident(table)}"
    sequence = conn.execute(sa.text("select pg_get_serial_sequence(:t, :c)"), {"t": qualified, "c": column}).scalar()
    if sequence:
        conn.execute(sa.text(f"select setval(:s, greatest((select max({quote_ident(column)}) from {qualified}), 1))"), {"s": sequence})


# -- what looks personal ----------------------------------------------------------------

PERSONAL_WORDS = ("email", "mail", "phone", "mobile", "name", "address", "street", "token", "password", "passwd", "secret", "iban", "birth", "ssn")
PERSONAL_PARTS = ("ip", "dob", "zip", "postcode")
PERSONAL_TYPES = ("inet", "cidr", "macaddr", "macaddr8")


def looks_personal(col: Column) -> str | None:
    """Why the column looks personal (its name or type), or None."""
    if col.base in PERSONAL_TYPES:
        return f"its type is {col.type}"
    lowered = col.name.lower()
    for word in PERSONAL_WORDS:
        if word in lowered:
            return f"its name contains {word!r}"
    parts = lowered.replace("-", "_").split("_")
    for part in PERSONAL_PARTS:
        if part in parts:
            return f"its name contains {part!r}"
    return None


def unmasked_personal(conn: sa.Connection, rules: list[tuple[Rule, Column]]) -> list[tuple[Column, str]]:
    """Columns that look personal and have no rule (``keep`` counts as a rule)."""
    covered = {col.qualified for _, col in rules}
    out = []
    for col in columns(conn):
        if col.table == "alembic_version" or col.qualified in covered:
            continue
        why = looks_personal(col)
        if why:
            out.append((col, why))
    return out

