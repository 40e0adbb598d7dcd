"""The schema as data: the model (tables, columns, foreign keys) and the catalog reader.

:func:`read_catalog` reads a database's tables, columns, keys and enums with
six set-based ``pg_catalog`` queries, whatever its size (no per-table
reflection), and hands the plain facts to :func:`build_schema`, which selects
the tables to draw (:meth:`DocsOptions.selects`) and derives each foreign
key's cardinality: the referenced side is *exactly one* when every
foreign-key column is NOT NULL and *zero or one* otherwise; the referencing
side is *zero or one* when the foreign-key columns are unique (they cover a
primary key, unique constraint or unique index) and *zero or more*
otherwise. A foreign key inside the referencing table's primary key is an
identifying relationship. Everything comes out sorted, so the renderers
(:mod:`~dbtasks.diagram.mermaid`, :mod:`~dbtasks.diagram.graphviz`) give
the same bytes for the same schema.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dbtasks.diagram.options import DocsOptions
from dbtasks.errors import UsageError

# -- the model ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    type: str  # as PostgreSQL formats it, user types without their schema
    not_null: bool
    pk: bool = False
    fk: bool = False
    uk: bool = False
    enum_values: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.schema, self.name)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclasses.dataclass(frozen=True)
class Relationship:
    """One foreign key: ``child`` (columns) references ``parent`` (columns)."""

    name: str
    child: tuple[str, str]
    child_columns: tuple[str, ...]
    parent: tuple[str, str]
    parent_columns: tuple[str, ...]
    optional: bool  # a foreign-key column is nullable: zero or one parent
    unique: bool  # the foreign-key columns are unique: zero or one child per parent
    identifying: bool  # the foreign-key columns are part of the child's primary key

    @property
    def parent_cardinality(self) -> str:
        return "zero-or-one" if self.optional else "exactly-one"

    @property
    def child_cardinality(self) -> str:
        return "zero-or-one" if self.unique else "zero-or-many"


@dataclasses.dataclass(frozen=True)
class Schema:
    """The tables to draw and the foreign keys between them, sorted."""

    tables: tuple[Table, ...]
    relationships: tuple[Relationship, ...]
    excluded: tuple[tuple[str, str], ...] = ()  # tables of the selected schemas that are not drawn

    def table(self, schema: str, name: str) -> Table:
        for t in self.tables:
            if t.key == (schema, name):
                return t
        raise KeyError(f"{schema}.{name}")


def build_schema(
    tables: Iterable[tuple[str, str, list[Column]]],
    constraints: Iterable[tuple[str, str, str, str, tuple[str, ...], tuple[str, str] | None, tuple[str, ...]]],
    unique_indexes: Iterable[tuple[str, str, tuple[str, ...]]],
    options: DocsOptions,
) -> Schema:
    """Assemble the sorted model from plain catalog facts.

    ``tables``: (schema, name, columns in table order) of every table in the
    selected schemas. ``constraints``: (schema, table, name, type p/u/f,
    columns, referenced (schema, table) or None, referenced columns).
    ``unique_indexes``: (schema, table, columns) of unique indexes that back no
    constraint. Both the catalog reader and the benchmark's Inspector reader
    go through here, so they draw the same thing from the same facts.
    """
    drawn: dict[tuple[str, str], list[Column]] = {}
    excluded: list[tuple[str, str]] = []
    for schema, name, columns in tables:
        if options.selects(schema, name):
            drawn[(schema, name)] = list(columns)
        else:
            excluded.append((schema, name))

    pk: dict[tuple[str, str], set[str]] = {}
    fk_cols: dict[tuple[str, str], set[str]] = {}
    uk_cols: dict[tuple[str, str], set[str]] = {}
    unique_sets: dict[tuple[str, str], list[frozenset[str]]] = {}
    fks: list[tuple[str, tuple[str, str], tuple[str, ...], tuple[str, str], tuple[str, ...]]] = []
    for schema, table, name, kind, columns, ref, ref_columns in constraints:
        key = (schema, table)
        if key not in drawn:
            continue
        if kind == "p":
            pk.setdefault(key, set()).update(columns)
            unique_sets.setdefault(key, []).append(frozenset(columns))
        elif kind == "u":
            uk_cols.setdefault(key, set()).update(columns)
            unique_sets.setdefault(key, []).append(frozenset(columns))
        elif kind == "f":
            fk_cols.setdefault(key, set()).update(columns)
            if ref is not None:
                fks.append((name, key, tuple(columns), ref, tuple(ref_columns)))
    for schema, table, columns in unique_indexes:
        key = (schema, table)
        if key in drawn:
            uk_cols.setdefault(key, set()).update(columns)
            unique_sets.setdefault(key, []).append(frozenset(columns))

    out_tables = []
    for key in sorted(drawn):
        pks, fks_, uks = pk.get(key, ()), fk_cols.get(key, ()), uk_cols.get(key, ())
        cols = tuple(
            Column(c.name, c.type, c.not_null, c.name in pks, c.name in fks_, c.name in uks, c.enum_values)
            for c in drawn[key]
        )
        out_tables.append(Table(key[0], key[1], cols))

    relationships = []
    for name, child, columns, parent, parent_columns in fks:
        if parent not in drawn:
            continue  # the referenced table is not drawn; the FK marker stays on the column
        by_name = {c.name: c for c in drawn[child]}
        col_set = frozenset(columns)
        relationships.append(Relationship(
            name=name,
            child=child,
            child_columns=columns,
            parent=parent,
            parent_columns=parent_columns,
            optional=any(not by_name[c].not_null for c in columns if c in by_name),
            unique=any(u <= col_set for u in unique_sets.get(child, [])),
            identifying=bool(pk.get(child)) and col_set <= pk[child],
        ))
    relationships.sort(key=lambda r: (r.parent, r.child, r.child_columns, r.name))
    return Schema(tuple(out_tables), tuple(relationships), tuple(sorted(excluded)))


# -- reading the catalog --------------------------------------------------------

# Every query is one round trip for the whole database: no per-table reflection.
# The search_path is pg_catalog only, so format_type() qualifies every user type
# with its schema, whatever the connecting role's search_path is; the reader
# strips that schema again (below).

_SCHEMAS_SQL = """
select n.nspname
from pg_namespace n
where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
order by n.nspname
"""

_TABLES_SQL = """
select c.oid, n.nspname, c.relname
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
where c.relkind in ('r', 'p')
  and not c.relispartition
  and n.nspname = any(:schemas)
  and not exists (
      select 1 from pg_depend d
      where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e')
"""

_COLUMNS_SQL = """
select a.attrelid, a.attnum, a.attname, a.attnotnull,
       format_type(a.atttypid, a.atttypmod) as type,
       quote_ident(bn.nspname) || '.' as type_prefix,
       case when bt.typtype = 'e' then bt.oid end as enum_oid
from pg_attribute a
join pg_type t on t.oid = a.atttypid
join pg_type bt on bt.oid = case when t.typcategory = 'A' and t.typelem <> 0 then t.typelem else t.oid end
join pg_namespace bn on bn.oid = bt.typnamespace
where a.attrelid = any(:oids) and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum
"""

# Key columns come back as attribute numbers, named from the columns already
# read; only a table outside the selection needs its names looked up here.
_CONSTRAINTS_SQL = """
select con.conrelid, con.conname, con.contype, con.conkey, con.confrelid, con.confkey,
       rn.nspname as ref_schema, rc.relname as ref_table,
       case when con.contype = 'f' and not con.confrelid = any(:oids) then
           array(select a.attname from unnest(con.confkey) with ordinality k(num, ord)
                 join pg_attribute a on a.attrelid = con.confrelid and a.attnum = k.num
                 order by k.ord)
       end as outside_ref_columns
from pg_constraint con
left join pg_class rc on rc.oid = con.confrelid
left join pg_namespace rn on rn.oid = rc.relnamespace
where con.conrelid = any(:oids) and con.contype in ('p', 'u', 'f')
"""

# Unique indexes made with CREATE UNIQUE INDEX (not by a constraint), over plain
# columns and without a WHERE clause: those make their columns unique too.
_UNIQUE_INDEXES_SQL = """
select i.indrelid, (i.indkey::int2[])[0:i.indnkeyatts - 1]  -- key columns, not INCLUDE ones
from pg_index i
left join pg_constraint c on c.conindid = i.indexrelid and c.conrelid = i.indrelid
where i.indrelid = any(:oids) and i.indisunique and i.indpred is null and i.indexprs is null
  and c.oid is null
"""

_ENUMS_SQL = """
select e.enumtypid, e.enumlabel
from pg_enum e
where e.enumtypid = any(:oids)
order by e.enumtypid, e.enumsortorder
"""


def user_schemas(conn: Connection) -> list[str]:
    """Every schema except PostgreSQL's own (pg_*, information_schema)."""
    return [r[0] for r in conn.execute(sa.text(_SCHEMAS_SQL))]


def read_catalog(conn: Connection, options: DocsOptions | None = None) -> Schema:
    """Read the tables, columns, keys and enums of ``conn``'s database: six queries, whatever its size."""
    options = options or DocsOptions()
    conn.execute(sa.text("set local search_path = pg_catalog"))
    available = user_schemas(conn)
    if options.schemas:
        missing = [s for s in options.schemas if s not in available]
        if missing:
            raise UsageError(
                f"schema {', '.join(repr(s) for s in missing)} does not exist in the database",
                f"the schemas are: {', '.join(available) or 'none'}",
            )
        schemas = list(options.schemas)
    else:
        schemas = available

    table_rows = conn.execute(sa.text(_TABLES_SQL), {"schemas": schemas}).all()
    names = {oid: (nsp, rel) for oid, nsp, rel in table_rows}
    oids = list(names)

    columns: dict[int, list[tuple[str, bool, str, int | None]]] = {}
    attnames: dict[int, dict[int, str]] = {}
    enum_oids: set[int] = set()
    for relid, attnum, attname, notnull, typ, prefix, enum_oid in conn.execute(sa.text(_COLUMNS_SQL), {"oids": oids}):
        if prefix != "pg_catalog." and typ.startswith(prefix):
            typ = typ[len(prefix):]
        columns.setdefault(relid, []).append((attname, notnull, typ, enum_oid))
        attnames.setdefault(relid, {})[attnum] = attname
        if enum_oid is not None:
            enum_oids.add(enum_oid)

    labels: dict[int, tuple[str, ...]] = {}
    if enum_oids:
        found: dict[int, list[str]] = {}
        for typid, label in conn.execute(sa.text(_ENUMS_SQL), {"oids": sorted(enum_oids)}):
            found.setdefault(typid, []).append(label)
        labels = {k: tuple(v) for k, v in found.items()}

    tables = []
    for oid, (nsp, rel) in names.items():
        cols = [
            Column(name, display_type(typ), notnull, enum_values=labels.get(enum_oid, ()) if enum_oid else ())
            for name, notnull, typ, enum_oid in columns.get(oid, [])
        ]
        tables.append((nsp, rel, cols))

    constraints = []
    rows = conn.execute(sa.text(_CONSTRAINTS_SQL), {"oids": oids})
    for relid, conname, contype, conkey, confrelid, confkey, ref_schema, ref_table, outside in rows:
        own = attnames.get(relid, {})
        cols = tuple(own[n] for n in conkey if n in own)
        ref, ref_cols = None, ()
        if contype == "f":
            ref = (ref_schema, ref_table)
            if outside is not None:  # a table outside the selected schemas
                ref_cols = tuple(outside)
            else:
                theirs = attnames.get(confrelid, {})
                ref_cols = tuple(theirs[n] for n in confkey if n in theirs)
        constraints.append((*names[relid], conname, contype, cols, ref, ref_cols))

    unique_indexes = []
    for relid, indkey in conn.execute(sa.text(_UNIQUE_INDEXES_SQL), {"oids": oids}):
        own = attnames.get(relid, {})
        unique_indexes.append((*names[relid], tuple(own[n] for n in indkey if n in own)))
    return build_schema(tables, constraints, unique_indexes, options)


_TYPE_ALIASES = (
    (re.compile(r"^timestamp(\(\d+\))? with time zone"), r"timestamptz\1"),
    (re.compile(r"^timestamp(\(\d+\))? without time zone"), r"timestamp\1"),
    (re.compile(r"^time(\(\d+\))? with time zone"), r"timetz\1"),
    (re.compile(r"^time(\(\d+\))? without time zone"), r"time\1"),
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character(?=\(|\[|$)"), "char"),
    (re.compile(r"^bit varying"), "varbit"),
    (re.compile(r"^double precision"), "float8"),
)


@functools.lru_cache(maxsize=4096)
def display_type(formatted: str) -> str:
    """PostgreSQL's type name in its short form: ``character varying(255)`` -> ``varchar(255)``."""
    for pattern, repl in _TYPE_ALIASES:
        formatted = pattern.sub(repl, formatted)
    return formatted
