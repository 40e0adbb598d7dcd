"""Benchmark: the diagram from six catalog queries vs. SQLAlchemy's Inspector.

On a generated schema (1,000 tables by default: eight columns each, a primary
key, a unique column, an enum column, two foreign keys, two schemas), this
reads the same content three ways and renders the same Mermaid text from each
(the texts are asserted equal, so the comparison is like for like):

- ``catalog``: :func:`dbtasks.diagram.read_catalog`, six set-based pg_catalog queries;
- ``inspector per table``: ``Inspector.get_columns``, ``get_pk_constraint``,
  ``get_foreign_keys``, ``get_unique_constraints`` and ``get_indexes`` for each
  table, the way reflection-based diagram tools read a schema;
- ``inspector get_multi``: SQLAlchemy 2.0's batched ``get_multi_*`` calls.

It prints the best of ``--repeat`` runs of each and the ratios, in one run.

Usage::

    .venv/bin/python bench/bench_diagram.py [--tables 1000] [--repeat 3]

It starts a throwaway PostgreSQL through ``dbtasks.testing.throwaway_server``
unless ``BENCH_DATABASE_URL`` names a server (its maintenance database); the
benchmark database is created and dropped on that server.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dbtasks import diagram  # noqa: E402
from dbtasks.database import create_database, drop_database, make_engine, scratch_name  # noqa: E402
from dbtasks.diagram import Column, DocsOptions  # noqa: E402


def schema_ddl(n: int) -> list[str]:
    """``n`` tables in public and sales, each with a PK, a UK, an enum and two FKs."""
    ddl = [
        "create schema sales",
        "create type status as enum ('new', 'active', 'closed')",
    ]
    for i in range(n):
        schema = "sales" if i % 4 == 3 else "public"
        parent = f"{'sales' if (i - 1) % 4 == 3 else 'public'}.t{i - 1:04d}" if i else None
        owner = f"{'sales' if (i // 2) % 4 == 3 else 'public'}.t{i // 2:04d}"
        cols = [
            "id bigint primary key",
            "code varchar(40) not null unique",
            "name varchar(200) not null",
            "amount numeric(10,2)",
            "state status not null default 'new'",
            "created_at timestamp with time zone not null default now()",
            f"parent_id bigint references {parent} (id)" if parent else "parent_id bigint",
            f"owner_id bigint not null references {owner} (id)" if i else "owner_id bigint not null",
        ]
        ddl.append(f"create table {schema}.t{i:04d} ({', '.join(cols)})")
    return ddl


# -- reading through the Inspector ------------------------------------------------


def _type_text(sa_type, dialect) -> str:
    """The Inspector's type object, written the way format_type() writes it."""
    if isinstance(sa_type, sa.Enum):
        return sa_type.name
    text = sa_type.compile(dialect=dialect).lower().replace(", ", ",")
    return diagram.display_type(text)


def _user_schemas(insp) -> list[str]:
    return [s for s in insp.get_schema_names() if not s.startswith("pg_") and s != "information_schema"]


def _facts(default: str, schema: str, name: str, cols, pk, fks, uqs, idxs, enums, dialect):
    columns = [
        Column(c["name"], _type_text(c["type"], dialect), not c["nullable"],
               enum_values=enums.get(c["type"].name, ()) if isinstance(c["type"], sa.Enum) else ())
        for c in cols
    ]
    constraints = []
    if pk and pk.get("constrained_columns"):
        constraints.append((schema, name, pk.get("name"), "p", tuple(pk["constrained_columns"]), None, ()))
    for u in uqs:
        constraints.append((schema, name, u["name"], "u", tuple(u["column_names"]), None, ()))
    for f in fks:
        ref = (f.get("referred_schema") or default, f["referred_table"])
        constraints.append((schema, name, f["name"], "f", tuple(f["constrained_columns"]), ref, tuple(f["referred_columns"])))
    uniques = [
        (schema, name, tuple(i["column_names"]))
        for i in idxs
        if i.get("unique") and not i.get("duplicates_constraint") and None not in i["column_names"]
        and not (i.get("dialect_options") or {}).get("postgresql_where")
    ]
    return (schema, name, columns), constraints, uniques


def inspector_per_table(conn: Connection, options: DocsOptions) -> diagram.Schema:
    insp = sa.inspect(conn)
    default = insp.default_schema_name
    enums = {e["name"]: tuple(e["labels"]) for e in insp.get_enums(schema="*")}
    tables, constraints, uniques = [], [], []
    for schema in _user_schemas(insp):
        for name in insp.get_table_names(schema=schema):
            t, c, u = _facts(
                default, schema, name,
                insp.get_columns(name, schema=schema),
                insp.get_pk_constraint(name, schema=schema),
                insp.get_foreign_keys(name, schema=schema),
                insp.get_unique_constraints(name, schema=schema),
                insp.get_indexes(name, schema=schema),
                enums, conn.dialect,
            )
            tables.append(t)
            constraints += c
            uniques += u
    return diagram.build_schema(tables, constraints, uniques, options)


def inspector_multi(conn: Connection, options: DocsOptions) -> diagram.Schema:
    insp = sa.inspect(conn)
    default = insp.default_schema_name
    enums = {e["name"]: tuple(e["labels"]) for e in insp.get_enums(schema="*")}
    tables, constraints, uniques = [], [], []
    for schema in _user_schemas(insp):
        cols = insp.get_multi_columns(schema=schema)
        pks = insp.get_multi_pk_constraint(schema=schema)
        fks = insp.get_multi_foreign_keys(schema=schema)
        uqs = insp.get_multi_unique_constraints(schema=schema)
        idxs = insp.get_multi_indexes(schema=schema)
        for key in sorted(cols, key=lambda k: k[1]):
            name = key[1]
            t, c, u = _facts(default, schema, name, cols[key], pks.get(key), fks.get(key, []), uqs.get(key, []), idxs.get(key, []), enums, conn.dialect)
            tables.append(t)
            constraints += c
            uniques += u
    return diagram.build_schema(tables, constraints, uniques, options)


def catalog(conn: Connection, options: DocsOptions) -> diagram.Schema:
    return diagram.read_catalog(conn, options)


# -- timing -------------------------------------------------------------------------


def measure(url: URL, reader: Callable, repeat: int) -> tuple[float, int, str]:
    """Best wall time of ``repeat`` runs (read + render), statements per run, the Mermaid text."""
    engine = make_engine(url)
    statements = 0

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(*_args):
        nonlocal statements
        statements += 1

    best, text, per_run = float("inf"), "", 0
    try:
        for _ in range(repeat):
            with engine.connect() as conn:
                conn.exec_driver_sql("select 1")  # connected before the clock starts
                before = statements
                started = time.perf_counter()
                text = diagram.render_mermaid(reader(conn, DocsOptions()))
                best = min(best, time.perf_counter() - started)
                per_run = statements - before
                conn.rollback()
    finally:
        engine.dispose()
    return best, per_run, text


def server():
    from dbtasks.testing import given_or_throwaway

    return given_or_throwaway(os.environ.get("BENCH_DATABASE_URL"), "BENCH_DATABASE_URL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with server() as admin:
        name = scratch_name("dbtasks_bench")
        url = create_database(admin, name)
        try:
            engine = make_engine(url)
            with engine.begin() as conn:
                for sql in schema_ddl(args.tables):
                    conn.exec_driver_sql(sql)
                version = conn.exec_driver_sql("show server_version").scalar()
            engine.dispose()

            results = {}
            for label, reader in (("catalog", catalog), ("inspector get_multi", inspector_multi), ("inspector per table", inspector_per_table)):
                results[label] = measure(url, reader, args.repeat)
            texts = {label: r[2] for label, r in results.items()}
            if len(set(texts.values())) != 1:
                raise SystemExit("the readers drew different diagrams; the comparison would be meaningless")
            schema_text = texts["catalog"]
            columns = sum(1 for line in schema_text.splitlines() if line.startswith("        "))
            rels = sum(1 for line in schema_text.splitlines() if line.startswith("    ") and (".." in line or "--" in line) and " : " in line)

            base = results["catalog"][0]
            print(f"schema: {args.tables} tables, {columns} columns, {rels} foreign keys, PostgreSQL {version}; best of {args.repeat} runs, read + render")
            print(f"{'reader':<24}{'seconds':>9}{'statements':>12}{'ratio':>9}")
            for label, (seconds, statements, _) in results.items():
                print(f"{label:<24}{seconds:>9.3f}{statements:>12}{seconds / base:>8.1f}x")
            print(f"catalog queries vs. Inspector per table: {results['inspector per table'][0] / base:.1f}x faster; "
                  f"vs. Inspector get_multi: {results['inspector get_multi'][0] / base:.1f}x faster (aim: at least 5x)")
        finally:
            drop_database(admin, name)


if __name__ == "__main__":
    main()
