"""A schema snapshot from the PostgreSQL catalog, and the difference between two.

The snapshot covers what a downgrade must restore, and what a schema loaded
from schema.sql must share with one built by replaying the history: schemas,
tables and views (with their definitions), columns (type, nullability,
default, identity), indexes, constraints, enum types with their labels,
domains, composite types, sequences and the column owning each, functions
(their whole definition), triggers, extensions and comments. It is
read with a handful of catalog queries (no per-table reflection), so taking
one after every migration step stays cheap on long histories.
"""

from __future__ import annotations

import sqlalchemy as sa

SYSTEM = "('pg_catalog', 'information_schema', 'pg_toast')"

QUERIES = {
    "schema": f"""
        select nspname, '' from pg_namespace
        where nspname not in {SYSTEM} and nspname not like 'pg_temp_%' and nspname not like 'pg_toast_temp_%'
    """,
    "table": f"""
        select n.nspname || '.' || c.relname, c.relkind::text
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'v', 'm', 'f') and n.nspname not in {SYSTEM}
          and c.relname <> :version_table
    """,
    "column": f"""
        select n.nspname || '.' || c.relname || '.' || a.attname,
               format_type(a.atttypid, a.atttypmod)
               || case when a.attnotnull then ' not null' else ' null' end
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
               || case a.attidentity when 'a' then ' identity always' when 'd' then ' identity by default' else '' end
               || case a.attgenerated when 's' then ' generated' else '' end
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid
        left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attnum > 0 and not a.attisdropped and c.relkind in ('r', 'p', 'v', 'm', 'f')
          and n.nspname not in {SYSTEM} and c.relname <> :version_table
    """,
    "index": f"""
        select n.nspname || '.' || ci.relname, pg_get_indexdef(i.indexrelid)
        from pg_index i
        join pg_class ci on ci.oid = i.indexrelid
        join pg_class ct on ct.oid = i.indrelid
        join pg_namespace n on n.oid = ct.relnamespace
        where n.nspname not in {SYSTEM} and ct.relname <> :version_table
    """,
    "constraint": f"""
        select n.nspname || '.' || cl.relname || '.' || con.conname, pg_get_constraintdef(con.oid)
        from pg_constraint con
        join pg_class cl on cl.oid = con.conrelid
        join pg_namespace n on n.oid = cl.relnamespace
        where n.nspname not in {SYSTEM} and cl.relname <> :version_table
    """,
    "enum type": f"""
        select n.nspname || '.' || t.typname, string_agg(quote_literal(e.enumlabel), ', ' order by e.enumsortorder)
        from pg_type t
        join pg_enum e on e.enumtypid = t.oid
        join pg_namespace n on n.oid = t.typnamespace
        where n.nspname not in {SYSTEM}
        group by 1
    """,
    "sequence": f"""
        select schemaname || '.' || sequencename,
               data_type::text || ' start ' || start_value || ' increment ' || increment_by
               || ' min ' || min_value || ' max ' || max_value || case when cycle then ' cycle' else '' end
        from pg_sequences where schemaname not in {SYSTEM}
    """,
    "sequence owner": f"""
        select n.nspname || '.' || s.relname, tn.nspname || '.' || t.relname || '.' || a.attname
               || case d.deptype when 'i' then ' (identity)' else '' end
        from pg_class s
        join pg_namespace n on n.oid = s.relnamespace
        join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = s.oid
             and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
        join pg_class t on t.oid = d.refobjid
        join pg_namespace tn on tn.oid = t.relnamespace
        join pg_attribute a on a.attrelid = t.oid and a.attnum = d.refobjsubid
        where s.relkind = 'S' and n.nspname not in {SYSTEM}
    """,
    "domain": f"""
        select n.nspname || '.' || t.typname,
               format_type(t.typbasetype, t.typtypmod) || case when t.typnotnull then ' not null' else '' end
               || coalesce(' default ' || t.typdefault, '')
               || coalesce((select ' ' || string_agg(pg_get_constraintdef(c.oid), ' ' order by c.conname)
                            from pg_constraint c where c.contypid = t.oid), '')
        from pg_type t join pg_namespace n on n.oid = t.typnamespace
        where t.typtype = 'd' and n.nspname not in {SYSTEM}
    """,
    "composite type": f"""
        select n.nspname || '.' || t.typname,
               (select string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum)
                from pg_attribute a where a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped)
        from pg_type t join pg_namespace n on n.oid = t.typnamespace join pg_class c on c.oid = t.typrelid
        where t.typtype = 'c' and c.relkind = 'c' and n.nspname not in {SYSTEM}
    """,
    "view definition": f"""
        select schemaname || '.' || viewname, definition from pg_views where schemaname not in {SYSTEM}
    """,
    "function": f"""
        select n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               md5(case when p.prokind in ('f', 'p') then pg_get_functiondef(p.oid) else p.prosrc end)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in {SYSTEM}
          and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
    """,
    "trigger": f"""
        select n.nspname || '.' || c.relname || '.' || t.tgname, pg_get_triggerdef(t.oid)
        from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
        where not t.tgisinternal and n.nspname not in {SYSTEM}
    """,
    "extension": "select extname, extversion from pg_extension",
    # Comments on the user's objects (not on an extension's members): the object as
    # pg_describe_object names it, sub-objects (columns) included.
    "comment": f"""
        select pg_describe_object(d.classoid, d.objoid, d.objsubid), d.description
        from pg_description d
        -- Objects made by initdb have OIDs below 16384 (FirstNormalObjectId): skipping their
        -- thousands of descriptions makes this query 9x cheaper. Schemas are the exception
        -- (public is made by initdb, and its comment can change).
        where (d.objoid >= 16384 or d.classoid = 'pg_namespace'::regclass)
          and d.classoid in ('pg_class'::regclass, 'pg_type'::regclass, 'pg_proc'::regclass, 'pg_constraint'::regclass,
                             'pg_trigger'::regclass, 'pg_namespace'::regclass)
          and not exists (select 1 from pg_depend e where e.classid = d.classoid and e.objid = d.objoid and e.deptype = 'e')
          and coalesce(
                case d.classoid
                  when 'pg_class'::regclass then (select relnamespace from pg_class where oid = d.objoid and relname <> :version_table)
                  when 'pg_type'::regclass then (select typnamespace from pg_type where oid = d.objoid)
                  when 'pg_proc'::regclass then (select pronamespace from pg_proc where oid = d.objoid)
                  when 'pg_constraint'::regclass then (select connamespace from pg_constraint where oid = d.objoid)
                  when 'pg_trigger'::regclass then (select c.relnamespace from pg_trigger t join pg_class c on c.oid = t.tgrelid where t.oid = d.objoid)
                  when 'pg_namespace'::regclass then d.objoid
                end, 'pg_catalog'::regnamespace
              ) not in (select oid from pg_namespace where nspname in {SYSTEM})
    """,
}

Snapshot = dict[str, dict[str, str]]


# Every query in one statement, one round trip: a roundtrip takes three snapshots per revision.
ALL_KINDS = "\nunion all\n".join(
    f"select {i} as kind, q.name::text, q.value::text from ({sql}) as q(name, value)" for i, sql in enumerate(QUERIES.values())
)


PREPARED = "dbtasks_snapshot"
NO_JIT = "dbtasks_no_jit"


def take(connection: sa.Connection, version_table: str = "alembic_version") -> Snapshot:
    """The schema as seen on ``connection`` (inside its current transaction).

    The query is prepared once per connection (planning it costs about as
    much as running it), then executed by name. JIT compilation is turned
    off for the connection's session first: the union's cost estimate is
    above ``jit_above_cost``, and compiling it took 16 times as long as
    running it (270 ms against 17 ms per snapshot, PostgreSQL 15). The
    connection is always one to a scratch database.
    """
    kinds = list(QUERIES)
    snap: Snapshot = {kind: {} for kind in kinds}
    params = {"version_table": version_table}
    if not connection.info.get(NO_JIT):
        connection.execute(sa.text("select set_config('jit', 'off', false)"))
        connection.info[NO_JIT] = True
    if connection.dialect.driver != "psycopg2":  # an async env.py's connection: asyncpg prepares on its own
        rows = connection.execute(sa.text(ALL_KINDS), params).all()
    else:
        if not connection.info.get(PREPARED):
            connection.execute(sa.text(f"prepare {PREPARED}(text) as " + ALL_KINDS.replace(":version_table", "$1")))
            connection.info[PREPARED] = True
        rows = connection.execute(sa.text(f"execute {PREPARED}(:version_table)"), params).all()
    for kind, name, value in rows:
        snap[kinds[kind]][str(name)] = str(value)
    return snap


def _name(kind: str, key: str) -> str:
    return f"{kind} {key.removeprefix('public.')}"


def difference(expected: Snapshot, actual: Snapshot) -> tuple[list[str], list[str], list[str]]:
    """(left behind, lost, changed): what ``actual`` has more, less, or different."""
    extra, missing, changed = [], [], []
    for kind in QUERIES:
        want, have = expected.get(kind, {}), actual.get(kind, {})
        for key in sorted(set(have) - set(want)):
            extra.append(_name(kind, key))
        for key in sorted(set(want) - set(have)):
            missing.append(_name(kind, key))
        for key in sorted(set(want) & set(have)):
            if want[key] != have[key]:
                changed.append(f"{_name(kind, key)}: {want[key]} -> {have[key]}")
    return extra, missing, changed
