"""The schema you can see: a Mermaid ER diagram and a schema.sql from the live catalog.

``regenerate-db-diagram`` migrates a scratch database to head (so the result
depends on the migrations only, never on what a developer's database happens
to hold), reads its catalog with six set-based ``pg_catalog`` queries and
writes, into ``docs/database/``:

- ``diagram.mmd``: a Mermaid ``erDiagram``. Every table with its columns and
  types; ``PK``, ``FK`` and ``UK`` markers; ``NOT NULL`` and enum values in
  the attribute comment; one relationship per foreign key, its cardinality
  derived from the catalog: the referenced side is *exactly one* when every
  foreign-key column is NOT NULL and *zero or one* otherwise; the referencing
  side is *zero or one* when the foreign-key columns are unique (they cover a
  primary key, unique constraint or unique index) and *zero or more*
  otherwise. A foreign key inside the referencing table's primary key is an
  identifying relationship (solid line), any other a dashed one.
- ``schema.sql``: ``pg_dump --schema-only`` normalized so it depends on the
  schema only: no version banner, no ``SET`` preamble, no ``\\restrict`` keys,
  no owners or privileges unless asked for, collapsed blank lines. Like Rails'
  ``structure.sql``, a pull request shows the schema change next to the
  migration that makes it.
- ``diagram.svg``: the same tables drawn by Graphviz ``dot`` from a DOT graph
  (Mermaid needs a JavaScript renderer), when ``dot`` is installed. The SVG
  records the SHA-256 of its DOT source, so :func:`check_db_docs` can tell a
  stale picture without Graphviz.

Everything is sorted and free of timestamps and database names, so running it
twice gives identical bytes and a diff shows only real change.

Which tables: every user schema (or the ``schemas`` given), minus tables owned
by extensions and partitions (their parent is drawn), filtered by ``include``
and ``exclude`` glob patterns matched against ``table`` and ``schema.table``.
``alembic_version`` is left out unless asked for. Defaults can be kept in
``[tool.dbtasks.diagram]`` of pyproject.toml (``output_dir``, ``schemas``,
``include``, ``exclude``, ``alembic_version``, ``owners``, ``privileges``,
``svg``); flags override them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import functools
import hashlib
import html
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from dbtasks.checks import CheckResult, Finding
from dbtasks.config import Settings
from dbtasks.database import connect, describe, scratch_database, server_version
from dbtasks.errors import ConfigError, DbtasksError, UsageError, redact

DIAGRAM_FILE = "diagram.mmd"
SCHEMA_FILE = "schema.sql"
SVG_FILE = "diagram.svg"
DEFAULT_OUTPUT_DIR = "docs/database"
ALEMBIC_VERSION = "alembic_version"
DEFAULT_SCHEMA = "public"

REGENERATE = "make regenerate-db-diagram"  # what a stale-docs message tells people to run
GRAPHVIZ_HINT = "install Graphviz for diagram.svg (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz) and run it again"


class DocsError(DbtasksError):
    """The diagram or schema.sql could not be generated."""


# -- options --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DocsOptions:
    """What to draw and where. Build it with :func:`docs_options`."""

    output_dir: str = DEFAULT_OUTPUT_DIR
    schemas: tuple[str, ...] = ()  # empty: every user schema
    include: tuple[str, ...] = ()  # glob patterns; empty: every table
    exclude: tuple[str, ...] = ()
    alembic_version: bool = False  # draw and dump the alembic_version table
    owners: bool = False  # keep OWNER TO in schema.sql
    privileges: bool = False  # keep GRANT/REVOKE in schema.sql
    svg: bool | None = None  # None: render diagram.svg when dot is installed

    def selects(self, schema: str, table: str) -> bool:
        """True when ``schema.table`` is drawn (schema selection is done by the query)."""
        names = (table, f"{schema}.{table}")
        if table == ALEMBIC_VERSION and not self.alembic_version:
            return False
        if self.include and not any(fnmatch.fnmatchcase(n, p) for p in self.include for n in names):
            return False
        return not any(fnmatch.fnmatchcase(n, p) for p in self.exclude for n in names)


_OPTION_KEYS = {f.name for f in dataclasses.fields(DocsOptions)}


def _as_tuple(value: Any, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"[tool.dbtasks.diagram] {key} must be a list of names, not {value!r}", f'e.g. {key} = ["public"]')
    return tuple(str(v).strip() for v in value if str(v).strip())


def _as_bool(value: Any, key: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"[tool.dbtasks.diagram] {key} must be true or false, not {value!r}")


def docs_options(settings: Settings, **overrides: Any) -> DocsOptions:
    """Options from ``[tool.dbtasks.diagram]``, then ``overrides`` (flags; None = not given)."""
    table = settings.extra.get("diagram", {})
    if not isinstance(table, dict):
        raise ConfigError("[tool.dbtasks] diagram must be a table", "write it as [tool.dbtasks.diagram]")
    unknown = set(table) - _OPTION_KEYS
    if unknown:
        raise ConfigError(
            f"unknown key(s) in [tool.dbtasks.diagram]: {', '.join(sorted(unknown))}",
            f"known keys: {', '.join(sorted(_OPTION_KEYS))}",
        )
    bad = set(overrides) - _OPTION_KEYS
    if bad:
        raise UsageError(f"unknown diagram option(s): {', '.join(sorted(bad))}")
    merged = {**table, **{k: v for k, v in overrides.items() if v is not None and v != ()}}
    values: dict[str, Any] = {}
    for key, value in merged.items():
        if key in ("schemas", "include", "exclude"):
            values[key] = _as_tuple(value, key)
        elif key == "output_dir":
            if not str(value).strip():
                raise ConfigError("the diagram output_dir is empty", f"use e.g. {DEFAULT_OUTPUT_DIR}")
            values[key] = str(value)
        else:
            values[key] = _as_bool(value, key)
    if values.get("alembic_version") is None:
        values.pop("alembic_version", None)
    for key in ("owners", "privileges"):
        if values.get(key) is None:
            values.pop(key, None)
    return DocsOptions(**values)


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


# -- Mermaid --------------------------------------------------------------------

# What Mermaid's erDiagram grammar accepts (mermaid-js erDiagram.jison): an
# attribute type or name is a word of letters, digits, - _ [ ] ( ); keys are
# PK, FK, UK (case-insensitively, so a column called "pk" must be renamed);
# comments and quoted entity names cannot hold a double quote, and quoted
# names no % or backslash either.
_ATTR_WORD = re.compile(r"^[A-Za-z_\u00C0-\uFFFF][A-Za-z0-9\-_\[\]()\u00C0-\uFFFF]*$")
_BARE_ENTITY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = {
    "erdiagram", "direction", "style", "classdef", "class", "acctitle", "accdescr",
    "to", "optionally", "one", "zero", "or", "more", "many", "only", "pk", "fk", "uk",
}

_PARENT_MARK = {"exactly-one": "||", "zero-or-one": "|o"}
_CHILD_MARK = {"zero-or-many": "o{", "zero-or-one": "o|"}


def entity_name(schema: str, table: str) -> str:
    """``users`` for public.users, ``"billing.invoices"`` elsewhere."""
    if schema == DEFAULT_SCHEMA and _BARE_ENTITY.match(table) and table.lower() not in _RESERVED:
        return table
    text = table if schema == DEFAULT_SCHEMA else f"{schema}.{table}"
    return '"' + re.sub(r'["%\\\r\n\v\b]', "_", text) + '"'


@functools.lru_cache(maxsize=65536)
def _mermaid_word(text: str) -> str:
    """A type or column name as a Mermaid word: ``numeric(10,2)`` -> ``numeric(10-2)``."""
    word = text.replace('"', "").replace(", ", "-").replace(",", "-")
    word = re.sub(r"[^A-Za-z0-9\-_\[\]()\u00C0-\uFFFF]", "_", word)
    if not word or not re.match(r"[A-Za-z_\u00C0-\uFFFF]", word):
        word = "_" + word
    if word.lower() in ("pk", "fk", "uk"):
        word += "_"
    return word


def _comment(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")


def render_mermaid(schema: Schema) -> str:
    """The schema as a Mermaid erDiagram: entities sorted by name, then relationships."""
    lines = [
        "erDiagram",
        f"    %% Generated by `dbtasks regenerate-db-diagram` ({REGENERATE}); do not edit by hand.",
    ]
    for table in schema.tables:
        name = entity_name(table.schema, table.name)
        if not table.columns:
            lines.append(f"    {name} {{")
            lines.append("    }")
            continue
        lines.append(f"    {name} {{")
        for col in table.columns:
            parts = [_mermaid_word(col.type), _mermaid_word(col.name)]
            keys = [k for k, on in (("PK", col.pk), ("FK", col.fk), ("UK", col.uk)) if on]
            if keys:
                parts.append(", ".join(keys))
            notes = []
            if _mermaid_word(col.name) != col.name:
                notes.append(f"column {col.name}")
            if col.not_null:
                notes.append("NOT NULL")
            if col.enum_values:
                notes.append("enum: " + ", ".join(col.enum_values))
            if notes:
                parts.append('"' + _comment("; ".join(notes)) + '"')
            lines.append("        " + " ".join(parts))
        lines.append("    }")
    for rel in schema.relationships:
        line = _PARENT_MARK[rel.parent_cardinality] + ("--" if rel.identifying else "..") + _CHILD_MARK[rel.child_cardinality]
        label = _comment(", ".join(rel.child_columns))
        lines.append(f"    {entity_name(*rel.parent)} {line} {entity_name(*rel.child)} : \"{label}\"")
    return "\n".join(lines) + "\n"


# -- Graphviz -------------------------------------------------------------------

# Crow's-foot ends for dot (the first shape is drawn next to the node).
_DOT_PARENT_END = {"exactly-one": "teetee", "zero-or-one": "teeodot"}
_DOT_CHILD_END = {"zero-or-many": "crowodot", "zero-or-one": "teeodot"}


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(schema: Schema) -> str:
    """The same diagram as a Graphviz DOT graph: one table-shaped node per table."""
    esc = html.escape
    lines = [
        "// Generated by `dbtasks regenerate-db-diagram`; do not edit by hand.",
        "digraph schema {",
        '    graph [rankdir=LR, nodesep=0.4, ranksep=1.0, fontname="Helvetica", bgcolor="white"];',
        '    node [shape=plain, fontname="Helvetica", fontsize=10];',
        '    edge [dir=both, color="#555555", arrowsize=0.8];',
    ]
    for table in schema.tables:
        title = table.name if table.schema == DEFAULT_SCHEMA else table.qualified
        rows = [f'<tr><td colspan="4" bgcolor="#dbe8f6" align="center"><b>{esc(title)}</b></td></tr>']
        for i, col in enumerate(table.columns):
            keys = ", ".join(k for k, on in (("PK", col.pk), ("FK", col.fk), ("UK", col.uk)) if on)
            name = f"<b>{esc(col.name)}</b>" if col.pk else esc(col.name)
            typ = esc(col.type)
            if col.enum_values:
                typ += f' <font color="#777777">({esc(" | ".join(col.enum_values))})</font>'
            null = '<font color="#777777">NOT NULL</font>' if col.not_null else ""
            rows.append(
                f'<tr><td port="in{i}" align="left">{name}</td><td align="left">{typ}</td>'
                f'<td align="left">{keys}</td><td port="out{i}" align="left">{null}</td></tr>'
            )
        label = '<table border="0" cellborder="1" cellspacing="0" cellpadding="3">' + "".join(rows) + "</table>"
        lines.append(f"    {_dot_id(table.qualified)} [label=<{label}>];")
    for rel in schema.relationships:
        child = schema.table(*rel.child)
        parent = schema.table(*rel.parent)
        cport = _port(child, rel.child_columns[0])
        pport = _port(parent, rel.parent_columns[0])
        attrs = [
            f"arrowhead={_DOT_PARENT_END[rel.parent_cardinality]}",
            f"arrowtail={_DOT_CHILD_END[rel.child_cardinality]}",
            f"tooltip={_dot_id(rel.name)}",
        ]
        if not rel.identifying:
            attrs.append("style=dashed")
        lines.append(
            f"    {_dot_id(child.qualified)}:out{cport}:e -> {_dot_id(parent.qualified)}:in{pport}:w [{', '.join(attrs)}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _port(table: Table, column: str) -> int:
    """The row of ``column``: edges leave a referencing row on the right, enter a referenced row on the left."""
    for i, col in enumerate(table.columns):
        if col.name == column:
            return i
    return 0


_SVG_DIGEST = re.compile(r"<!-- dbtasks-dot-sha256: ([0-9a-f]{64}) -->")


def dot_digest(dot: str) -> str:
    return hashlib.sha256(dot.encode()).hexdigest()


def find_dot() -> str | None:
    """Graphviz ``dot`` on PATH, or None."""
    return shutil.which("dot")


def render_svg(dot: str, dot_binary: str) -> str:
    """Render DOT text to SVG with Graphviz, stamped with the DOT text's digest.

    Graphviz's version comment is dropped, so the file changes only when the
    picture does (the layout itself may still differ between Graphviz versions;
    :func:`check_db_docs` compares the digest, not the bytes).
    """
    try:
        proc = subprocess.run([dot_binary, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DocsError(f"Graphviz dot could not run: {exc}", GRAPHVIZ_HINT) from None
    if proc.returncode != 0:
        first = (proc.stderr.strip().splitlines() or ["no output"])[0]
        raise DocsError(f"Graphviz dot failed: {first}")
    svg = re.sub(r"<!-- Generated by graphviz[^>]*-->\n?", "", proc.stdout)
    stamp = (
        f"<!-- dbtasks-dot-sha256: {dot_digest(dot)} -->\n"
        "<!-- Generated by `dbtasks regenerate-db-diagram`; do not edit by hand. -->\n"
    )
    at = svg.find("<svg")
    if at < 0:
        raise DocsError("Graphviz dot printed no SVG")
    return svg[:at] + stamp + svg[at:]


def svg_digest(svg: str) -> str | None:
    """The DOT digest an SVG was rendered from, or None."""
    match = _SVG_DIGEST.search(svg)
    return match.group(1) if match else None


# -- schema.sql -----------------------------------------------------------------

SCHEMA_HEADER = (
    "-- The database schema at the head of the migrations: pg_dump --schema-only, normalized.\n"
    f"-- Generated by `dbtasks regenerate-db-diagram` ({REGENERATE}); do not edit by hand.\n"
)

_BANNER = re.compile(r"(?m)^--\n-- PostgreSQL database dump(?: complete)?\n--\n")
_DROP_LINE = re.compile(
    r"^(?:"
    r"\\(?:un)?restrict\b.*"  # random per-dump keys (pg_dump 17.6, 16.10, 15.14 and later)
    r"|-- Dumped (?:from database|by pg_dump) version .*"
    r"|SET [a-z_]+ = .*;"  # the session preamble; DDL never starts a line with SET
    r"|SELECT pg_catalog\.set_config\('search_path', '', false\);"
    r")$"
)


def normalize_dump(text: str, owners: bool = False) -> str:
    """pg_dump's schema-only output without what depends on the pg_dump version.

    Drops the banner, the ``SET`` preamble, ``\\restrict``/``\\unrestrict``
    lines with their random keys and the ``Owner:`` part of section comments
    (unless ``owners``); strips trailing spaces and collapses blank lines.
    """
    out: list[str] = []
    for line in _BANNER.sub("", text.replace("\r\n", "\n")).splitlines():
        line = line.rstrip()
        if _DROP_LINE.match(line):
            continue
        if not owners and line.startswith("-- Name: "):
            line = re.sub(r"; Owner: .*$", "", line)
        out.append(line)
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")
    return SCHEMA_HEADER + "\n" + body + "\n"


def _pattern_literal(name: str) -> str:
    """A pg_dump name pattern that matches exactly ``name`` (quoted: no wildcards)."""
    return '"' + name.replace('"', '""') + '"'


def pg_dump_command(pg_dump: str, url: URL, schema: Schema, options: DocsOptions) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the schema dump. The password is in the environment only."""
    from dbtasks.data.tools import client_environment

    argv = [pg_dump, "--schema-only", "--no-tablespaces", "--no-security-labels", "--no-publications", "--no-subscriptions"]
    if not options.owners:
        argv.append("--no-owner")
    if not options.privileges:
        argv.append("--no-privileges")
    for name in options.schemas:
        argv.append(f"--schema={_pattern_literal(name)}")
    for nsp, rel in schema.excluded:
        argv.append(f"--exclude-table={_pattern_literal(nsp)}.{_pattern_literal(rel)}")
    return argv, client_environment(url)


def choose_pg_dump(settings: Settings, url: URL) -> str:
    """A pg_dump that can dump the server of ``url``: same major version preferred."""
    from dbtasks.data.tools import find_client

    major = server_version(url) // 10000
    return find_client("pg_dump", settings.pg_bin, min_major=major, prefer=major, why=f"the server is PostgreSQL {major}").path


def dump_schema(settings: Settings, url: URL, schema: Schema, options: DocsOptions) -> str:
    """The normalized schema-only dump of the database at ``url``."""
    argv, env = pg_dump_command(choose_pg_dump(settings, url), url, schema, options)
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as exc:
        raise DocsError(f"pg_dump could not run: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise DocsError(f"pg_dump failed on {describe(url)}: {redact(lines[-1] if lines else 'no output')}")
    return normalize_dump(proc.stdout, owners=options.owners)


# -- the source database ----------------------------------------------------------


@contextlib.contextmanager
def source_database(settings: Settings, from_database: bool = False) -> Iterator[URL]:
    """The database to draw: the configured one, or a scratch one migrated to head.

    The scratch database lives on the configured database's server (the local
    one after ``make init``), starts from ``template0`` and is dropped
    afterwards, whatever happens.
    """
    from dbtasks.server import start_hint

    if from_database:
        with connect(settings.url, start_hint(settings)):
            pass
        yield settings.url
        return
    if settings.is_protected:
        raise UsageError(
            f"regenerate-db-diagram migrates a scratch database, and {settings.env!r} is a protected environment",
            "pass --from-database (make or just: FROM_DATABASE=1) to draw that database as it is",
        )
    # template0, not template1: whatever a machine added to template1 must not show up in the docs
    with scratch_database(settings.url, "template0", "dbtasks_docs", start_hint(settings), why="the docs are drawn from a scratch database (or pass --from-database)") as scratch:
        _migrate_to_head(settings, scratch)
        yield scratch


def _migrate_to_head(settings: Settings, url: URL) -> None:
    from alembic import command

    from dbtasks.migrations import alembic_config, translate_errors

    scratch = settings.with_(database_url=url.render_as_string(hide_password=False), env=None, db_server="external")
    with translate_errors(scratch), connect(url) as conn:
        command.upgrade(alembic_config(scratch, connection=conn, quiet=True), "head")
        if conn.in_transaction():
            conn.commit()


# -- the verbs ------------------------------------------------------------------


@dataclasses.dataclass
class GeneratedDocs:
    """The files as they should be, in memory."""

    schema: Schema
    files: dict[str, str]  # file name -> content (diagram.mmd, schema.sql)
    dot: str
    svg: str | None = None  # rendered when asked and dot is installed
    notes: list[str] = dataclasses.field(default_factory=list)


def generate(settings: Settings, options: DocsOptions | None = None, from_database: bool = False, render: bool = True) -> GeneratedDocs:
    """Read the schema (scratch database at head, or the configured one) and render every file."""
    options = options or docs_options(settings)
    with source_database(settings, from_database) as url:
        with connect(url) as conn:
            schema = read_catalog(conn, options)
            conn.rollback()
        sql = dump_schema(settings, url, schema, options)
    docs = GeneratedDocs(schema, {DIAGRAM_FILE: render_mermaid(schema), SCHEMA_FILE: sql}, render_dot(schema))
    if render and options.svg is not False:
        dot = find_dot()
        if dot:
            docs.svg = render_svg(docs.dot, dot)
        elif options.svg:
            raise DocsError("svg = true, but Graphviz `dot` is not installed", GRAPHVIZ_HINT)
        else:
            docs.notes.append(f"{SVG_FILE} not rendered: Graphviz `dot` is not installed; {GRAPHVIZ_HINT}")
    return docs


@dataclasses.dataclass
class WrittenFile:
    path: Path
    status: str  # written, unchanged, stale (could not be refreshed)


@dataclasses.dataclass
class RegenerateResult:
    files: list[WrittenFile]
    tables: int
    relationships: int
    notes: list[str]


def output_dir(settings: Settings, options: DocsOptions) -> Path:
    path = settings.path(options.output_dir)
    if path.exists() and not path.is_dir():
        raise UsageError(f"the diagram output directory {path} is a file", "pass --output-dir with a directory")
    return path


def _write_if_changed(path: Path, content: str) -> bool:
    try:
        if path.read_text() == content:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def regenerate_db_diagram(settings: Settings, options: DocsOptions | None = None, from_database: bool = False) -> RegenerateResult:
    """Write diagram.mmd, schema.sql (and diagram.svg when dot is installed) from the schema at head.

    Files whose content is unchanged are not rewritten. Nothing is written
    unless every file could be generated.
    """
    options = options or docs_options(settings)
    directory = output_dir(settings, options)
    docs = generate(settings, options, from_database)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {directory}: {exc.strerror}", "pass --output-dir with a writable directory") from None
    written = []
    for name in (DIAGRAM_FILE, SCHEMA_FILE):
        path = directory / name
        written.append(WrittenFile(path, "written" if _write_if_changed(path, docs.files[name]) else "unchanged"))
    notes = list(docs.notes)
    svg_path = directory / SVG_FILE
    if docs.svg is not None:
        current = _read(svg_path)
        if current is not None and svg_digest(current) == dot_digest(docs.dot):
            written.append(WrittenFile(svg_path, "unchanged"))  # same picture; keep this Graphviz's layout
        else:
            _write_if_changed(svg_path, docs.svg)
            written.append(WrittenFile(svg_path, "written"))
    elif svg_path.exists() and svg_digest(_read(svg_path) or "") != dot_digest(docs.dot):
        written.append(WrittenFile(svg_path, "stale"))
        notes.append(f"{svg_path.name} is now stale and `check-db-docs` will fail; {GRAPHVIZ_HINT}")
    return RegenerateResult(written, len(docs.schema.tables), len(docs.schema.relationships), notes)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


MAX_DIFF_LINES = 200


def unified_diff(committed: str, fresh: str, name: str) -> str:
    """A unified diff from the checked-in file to the regenerated one (long ones cut)."""
    lines = list(difflib.unified_diff(
        committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
        fromfile=f"{name} (checked in)", tofile=f"{name} (regenerated)",
    ))
    if len(lines) > MAX_DIFF_LINES:
        lines = lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more diff lines\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")


def check_db_docs(settings: Settings, options: DocsOptions | None = None, from_database: bool = False) -> CheckResult:
    """Regenerate in memory and compare with the checked-in files (check name ``docs``).

    A missing or different diagram.mmd or schema.sql is an error finding whose
    message carries the unified diff; a diagram.svg whose recorded DOT digest
    differs from the regenerated DOT is one too (no Graphviz needed for that).
    """
    started = time.monotonic()
    options = options or docs_options(settings)
    directory = output_dir(settings, options)
    docs = generate(settings, options, from_database, render=False)
    result = CheckResult("docs")
    remedy = f"run `{REGENERATE}` (or `just regenerate-db-diagram`) and commit the result"
    for name in (DIAGRAM_FILE, SCHEMA_FILE):
        path = directory / name
        shown = _relative(path, settings.project_dir)
        committed = _read(path)
        if committed is None:
            result.findings.append(Finding("docs", "missing", f"{shown} is missing", file=shown, remedy=remedy))
        elif committed != docs.files[name]:
            diff = unified_diff(committed, docs.files[name], shown)
            result.findings.append(Finding("docs", "stale", f"{shown} is stale: it differs from the schema at head\n{diff}", file=shown, remedy=remedy))
    svg_path = directory / SVG_FILE
    svg = _read(svg_path)
    shown = _relative(svg_path, settings.project_dir)
    if svg is not None and svg_digest(svg) != dot_digest(docs.dot):
        result.findings.append(Finding(
            "docs", "stale-svg", f"{shown} is stale: it was drawn from another schema", file=shown,
            remedy=f"{remedy} (it needs Graphviz: apt-get install graphviz)",
        ))
    elif svg is None:
        result.notes.append(f"{shown} is absent (optional; rendered when Graphviz dot is installed)")
    result.seconds = time.monotonic() - started
    return result


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
