"""The Mermaid diagram, the DOT graph and schema.sql, read from a real catalog.

The diagram is asserted on its parsed form (entities, attributes, keys,
comments, relationships), never against a pasted copy of the output.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import pytest
from sqlalchemy.engine import URL

from dbtasks import diagram
from dbtasks.checks.docs import check_db_docs
from dbtasks.config import load_settings
from dbtasks.database import connect, create_database, drop_database, scratch_name
from dbtasks.diagram import DocsOptions
from dbtasks.diagram import readme as readme_blocks
from dbtasks.errors import UsageError

from .conftest import REPO, url_str

# A schema with what a diagram has to get right: composite keys, a
# self-reference, nullable and unique foreign keys (by constraint and by
# unique index), two schemas, enums, partitions, odd names, alembic_version.
COMPLEX_DDL = [
    "create schema billing",
    "create type mood as enum ('happy', 'sad', 'it''s \"complicated\"')",
    "create type billing.currency as enum ('eur', 'usd')",
    """create table users (
        id bigint primary key,
        email text not null unique,
        manager_id bigint references users (id),
        mood mood,
        nicknames text[],
        created timestamp(3) with time zone not null default now()
    )""",
    "create unique index users_lower_email on users (lower(email))",
    "create table profiles (user_id bigint primary key references users (id), bio varchar(500))",
    "create table orders (id bigint primary key, user_id bigint not null references users (id), total numeric(10,2) not null)",
    """create table order_lines (
        order_id bigint not null references orders (id),
        line_no integer not null,
        sku text not null,
        primary key (order_id, line_no)
    )""",
    "create unique index order_lines_sku_partial on order_lines (sku) where sku <> ''",
    """create table shipments (
        id bigint primary key,
        order_id bigint,
        line_no integer,
        foreign key (order_id, line_no) references order_lines (order_id, line_no),
        unique (order_id, line_no)
    )""",
    """create table billing.invoices (
        id bigint primary key,
        order_id bigint not null references public.orders (id),
        currency billing.currency not null,
        amount numeric(12,2)
    )""",
    "create unique index invoices_order_id_key on billing.invoices (order_id)",
    "create table billing.archive_2020 (id integer primary key)",
    'create table "Audit Log" ("When" timestamptz, pk text, "2fa" boolean)',
    "create table alembic_version (version_num varchar(32) primary key)",
    "create table measurements (id bigint, taken date not null) partition by range (taken)",
    "create table measurements_2020 partition of measurements for values from ('2020-01-01') to ('2021-01-01')",
]


def execute(url: URL, statements: list[str]) -> None:
    with connect(url) as conn:
        for sql in statements:
            conn.exec_driver_sql(sql)
        conn.commit()


def read(url: URL, **options) -> diagram.Schema:
    with connect(url) as conn:
        return diagram.read_catalog(conn, DocsOptions(**options))


# -- a small parser of the Mermaid erDiagram subset we write ---------------------

_NAME = r'(?:"[^"%\\]+"|[A-Za-z_][A-Za-z0-9_]*)'
_ENTITY = re.compile(rf"^    (?P<name>{_NAME}) \{{$")
_ATTR = re.compile(
    r"^        (?P<type>[A-Za-z_][A-Za-z0-9\-_\[\]()]*) (?P<name>[A-Za-z_][A-Za-z0-9\-_\[\]()]*)"
    r'(?: (?P<keys>(?:PK|FK|UK)(?:, (?:PK|FK|UK))*))?(?: "(?P<comment>[^"]*)")?$'
)
_REL = re.compile(
    rf"^    (?P<a>{_NAME}) (?P<left>\|\||\|o|\}}o|\}}\|)(?P<line>--|\.\.)(?P<right>\|\||o\||o\{{|\|\{{) (?P<b>{_NAME}) : \"(?P<label>[^\"]*)\"$"
)

CARD_LEFT = {"||": "exactly-one", "|o": "zero-or-one", "}o": "zero-or-many", "}|": "one-or-many"}
CARD_RIGHT = {"||": "exactly-one", "o|": "zero-or-one", "o{": "zero-or-many", "|{": "one-or-many"}


def parse_mermaid(text: str) -> tuple[dict, list[dict]]:
    """Entities {name: [attribute dicts]} and relationships, or an AssertionError on any other line."""
    lines = text.splitlines()
    assert lines[0] == "erDiagram"
    entities: dict[str, list[dict]] = {}
    rels: list[dict] = []
    current = None
    for line in lines[1:]:
        if line.strip().startswith("%%"):
            continue
        if current is not None:
            if line == "    }":
                current = None
                continue
            m = _ATTR.match(line)
            assert m, f"not an attribute line: {line!r}"
            entities[current].append({
                "type": m["type"], "name": m["name"],
                "keys": set(m["keys"].split(", ")) if m["keys"] else set(),
                "comment": m["comment"] or "",
            })
            continue
        m = _ENTITY.match(line)
        if m:
            current = m["name"].strip('"')
            assert current not in entities, f"entity {current} twice"
            entities[current] = []
            continue
        m = _REL.match(line)
        assert m, f"not an entity or relationship line: {line!r}"
        rels.append({
            "parent": m["a"].strip('"'), "child": m["b"].strip('"'),
            "parent_card": CARD_LEFT[m["left"]], "child_card": CARD_RIGHT[m["right"]],
            "identifying": m["line"] == "--", "label": m["label"],
        })
    assert current is None, "unclosed entity"
    return entities, rels


def attrs(entities: dict, entity: str) -> dict[str, dict]:
    return {a["name"]: a for a in entities[entity]}


@pytest.fixture
def complex_db(empty_database: URL) -> URL:
    execute(empty_database, COMPLEX_DDL)
    return empty_database


# -- the diagram ----------------------------------------------------------------


def test_complex_schema_is_drawn_correctly(complex_db):
    entities, rels = parse_mermaid(diagram.render_mermaid(read(complex_db)))

    # every table once, partitions folded into their parent, alembic_version left out
    assert list(entities) == [
        "billing.archive_2020", "billing.invoices", "Audit Log", "measurements",
        "order_lines", "orders", "profiles", "shipments", "users",
    ]

    users = attrs(entities, "users")
    assert list(users) == ["id", "email", "manager_id", "mood", "nicknames", "created"]  # table order
    assert users["id"]["type"] == "bigint" and users["id"]["keys"] == {"PK"}
    assert users["email"]["keys"] == {"UK"} and "NOT NULL" in users["email"]["comment"]
    assert users["manager_id"]["keys"] == {"FK"} and "NOT NULL" not in users["manager_id"]["comment"]
    assert users["mood"]["type"] == "mood"
    assert users["mood"]["comment"] == "enum: happy, sad, it's 'complicated'"
    assert users["nicknames"]["type"] == "text[]"
    assert users["created"]["type"] == "timestamptz(3)" and users["created"]["comment"] == "NOT NULL"

    lines = attrs(entities, "order_lines")
    assert lines["order_id"]["keys"] == {"PK", "FK"} and lines["line_no"]["keys"] == {"PK"}
    assert lines["sku"]["keys"] == set()  # a partial unique index makes nothing unique

    ship = attrs(entities, "shipments")
    assert ship["order_id"]["keys"] == {"FK", "UK"} and ship["line_no"]["keys"] == {"FK", "UK"}

    inv = attrs(entities, "billing.invoices")
    assert inv["order_id"]["keys"] == {"FK", "UK"}  # unique by CREATE UNIQUE INDEX
    assert inv["currency"]["type"] == "currency"
    assert inv["currency"]["comment"] == "NOT NULL; enum: eur, usd"
    assert inv["amount"]["type"] == "numeric(12-2)"  # Mermaid types cannot hold a comma
    assert attrs(entities, "orders")["total"]["type"] == "numeric(10-2)"
    assert attrs(entities, "profiles")["bio"]["type"] == "varchar(500)"

    audit = attrs(entities, "Audit Log")
    assert set(audit) == {"When", "pk_", "_2fa"}  # "pk" would read as a key marker
    assert audit["pk_"]["comment"] == "column pk" and audit["_2fa"]["comment"] == "column 2fa"
    assert audit["When"]["type"] == "timestamptz"

    got = {(r["parent"], r["child"], r["label"]): (r["parent_card"], r["child_card"], r["identifying"]) for r in rels}
    assert got == {
        ("users", "users", "manager_id"): ("zero-or-one", "zero-or-many", False),  # self-reference, nullable
        ("users", "profiles", "user_id"): ("exactly-one", "zero-or-one", True),  # FK = PK: one-to-one, identifying
        ("users", "orders", "user_id"): ("exactly-one", "zero-or-many", False),
        ("orders", "order_lines", "order_id"): ("exactly-one", "zero-or-many", True),  # part of a composite PK
        ("order_lines", "shipments", "order_id, line_no"): ("zero-or-one", "zero-or-one", False),  # composite, nullable, unique
        ("orders", "billing.invoices", "order_id"): ("exactly-one", "zero-or-one", False),  # unique index
    }
    assert len(rels) == len(got)


def test_model_records_cardinality_for_other_renderers(complex_db):
    schema = read(complex_db)
    by_name = {r.name: r for r in schema.relationships}
    fk = by_name["shipments_order_id_line_no_fkey"]
    assert fk.child == ("public", "shipments") and fk.parent == ("public", "order_lines")
    assert fk.child_columns == ("order_id", "line_no") and fk.parent_columns == ("order_id", "line_no")
    assert (fk.parent_cardinality, fk.child_cardinality) == ("zero-or-one", "zero-or-one")
    assert schema.excluded == (("public", "alembic_version"),)


def test_schema_selection_and_patterns(complex_db):
    entities, rels = parse_mermaid(diagram.render_mermaid(read(complex_db, schemas=("billing",))))
    assert list(entities) == ["billing.archive_2020", "billing.invoices"]
    assert rels == []  # orders is not drawn, so no line to it ...
    assert attrs(entities, "billing.invoices")["order_id"]["keys"] == {"FK", "UK"}  # ... but the key is still marked

    entities, _ = parse_mermaid(diagram.render_mermaid(read(complex_db, include=("billing.*", "users"))))
    assert list(entities) == ["billing.archive_2020", "billing.invoices", "users"]

    entities, rels = parse_mermaid(diagram.render_mermaid(read(complex_db, exclude=("*archive*", "order*", "Audit*"))))
    assert list(entities) == ["billing.invoices", "measurements", "profiles", "shipments", "users"]
    assert {(r["parent"], r["child"]) for r in rels} == {("users", "users"), ("users", "profiles")}

    entities, _ = parse_mermaid(diagram.render_mermaid(read(complex_db, alembic_version=True, include=("alembic_version",))))
    assert attrs(entities, "alembic_version")["version_num"] == {
        "type": "varchar(32)", "name": "version_num", "keys": {"PK"}, "comment": "NOT NULL",
    }


def test_unknown_schema_is_a_usage_error(complex_db):
    with pytest.raises(UsageError) as err:
        read(complex_db, schemas=("nope",))
    assert "'nope' does not exist" in str(err.value) and "billing, public" in str(err.value)


def test_output_does_not_depend_on_creation_order_or_run(complex_db, dbtasks_server_url):
    """Sorted output: the same schema built in another order draws the same bytes."""
    first = read(complex_db)
    again = read(complex_db)
    assert diagram.render_mermaid(first) == diagram.render_mermaid(again)
    assert diagram.render_dot(first) == diagram.render_dot(again)

    name = scratch_name("dbtasks_test")
    other = create_database(dbtasks_server_url, name)
    try:
        head, tables = COMPLEX_DDL[:3], COMPLEX_DDL[3:]
        # Tables without their foreign keys first, in reverse order; keys added afterwards.
        plain = [re.sub(r"\s+references [a-z_.]+ \([a-z_]+\)", "", t) for t in tables]
        plain = [re.sub(r",\s*foreign key \(order_id, line_no\) references order_lines \(order_id, line_no\)", "", t) for t in plain]
        ordered = [t for t in plain if "partition of" not in t and "create unique index" not in t]
        rest = [t for t in plain if t not in ordered]
        execute(other, head + list(reversed(ordered)) + rest + [
            "alter table billing.invoices add foreign key (order_id) references orders (id)",
            "alter table shipments add foreign key (order_id, line_no) references order_lines (order_id, line_no)",
            "alter table order_lines add foreign key (order_id) references orders (id)",
            "alter table orders add foreign key (user_id) references users (id)",
            "alter table profiles add foreign key (user_id) references users (id)",
            "alter table users add foreign key (manager_id) references users (id)",
        ])
        assert diagram.render_mermaid(read(other)) == diagram.render_mermaid(first)
    finally:
        drop_database(dbtasks_server_url, name)


# -- the DOT graph and the SVG --------------------------------------------------

_EDGE = re.compile(r'^    "(?P<child>[^"]+)":out(?P<cport>\d+):e -> "(?P<parent>[^"]+)":in(?P<pport>\d+):w \[(?P<attrs>[^\]]*)\];$', re.M)


def test_dot_graph_has_every_table_and_crows_foot_edges(complex_db):
    schema = read(complex_db)
    dot = diagram.render_dot(schema)
    assert dot.splitlines()[1] == "digraph schema {" and dot.rstrip().endswith("}")
    for table in schema.tables:
        assert f'    "{table.qualified}" [label=<' in dot
    edges = {}
    for m in _EDGE.finditer(dot):
        attrs_ = dict(kv.split("=", 1) for kv in m["attrs"].split(", "))
        edges[(m["child"], m["parent"])] = (attrs_, int(m["cport"]), int(m["pport"]))
    assert len(edges) == len(schema.relationships)
    one_to_one, _, _ = edges[("public.profiles", "public.users")]
    assert one_to_one["arrowhead"] == "teetee" and one_to_one["arrowtail"] == "teeodot" and "style" not in one_to_one
    self_ref, cport, pport = edges[("public.users", "public.users")]
    assert self_ref["arrowhead"] == "teeodot" and self_ref["arrowtail"] == "crowodot" and self_ref["style"] == "dashed"
    assert (cport, pport) == (2, 0)  # manager_id -> id
    # enum values and HTML-escaped text in the labels
    assert "happy | sad | it&#x27;s &quot;complicated&quot;" in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz dot is not installed (apt-get install graphviz)")
def test_svg_is_rendered_and_stamped_with_its_source(complex_db):
    dot = diagram.render_dot(read(complex_db))
    svg = diagram.render_svg(dot, shutil.which("dot"))
    root = ET.fromstring(svg.encode())
    assert root.tag.endswith("svg")
    texts = {t.text for t in root.iter() if t.tag.endswith("text")}
    assert {"users", "billing.invoices", "manager_id"} <= texts
    assert diagram.svg_digest(svg) == diagram.dot_digest(dot)
    assert "Generated by graphviz" not in svg  # the version comment is dropped


# -- schema.sql -----------------------------------------------------------------

RAW_DUMP = """--
-- PostgreSQL database dump
--

\\restrict Zq1nX9yYrandomKEY

-- Dumped from database version 17.6
-- Dumped by pg_dump version 17.6

SET statement_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
SET default_table_access_method = heap;

--
-- Name: users; Type: TABLE; Schema: public; Owner: alice
--

CREATE TABLE public.users (   
    id bigint NOT NULL
);



--
-- PostgreSQL database dump complete
--

\\unrestrict Zq1nX9yYrandomKEY

"""


def test_normalize_dump_removes_version_noise():
    text = diagram.normalize_dump(RAW_DUMP)
    assert text == diagram.SCHEMA_HEADER + "\n" + (
        "--\n"
        "-- Name: users; Type: TABLE; Schema: public\n"
        "--\n"
        "\n"
        "CREATE TABLE public.users (\n"
        "    id bigint NOT NULL\n"
        ");\n"
    )
    assert "Owner: alice" in diagram.normalize_dump(RAW_DUMP, owners=True)
    # the same dump from another pg_dump version (another banner, another key) normalizes the same
    other = RAW_DUMP.replace("17.6", "16.2").replace("Zq1nX9yYrandomKEY", "other").replace("SET transaction_timeout = 0;\n", "")
    assert diagram.normalize_dump(other) == text


def test_pg_dump_gets_the_password_from_the_environment_only(complex_db):
    url = complex_db.set(password="s3cret-pw")
    schema = read(complex_db)
    argv, env = diagram.pg_dump_command("/bin/pg_dump", url, schema, DocsOptions(schemas=("public", 'we"ird')))
    assert not any("s3cret-pw" in a for a in argv)
    assert env["PGPASSWORD"] == "s3cret-pw" and env["PGDATABASE"] == complex_db.database
    assert '--exclude-table="public"."alembic_version"' in argv  # literal, not a pattern
    assert '--schema="we""ird"' in argv and "--no-owner" in argv and "--no-privileges" in argv


def test_schema_sql_is_normalized_and_selected(complex_db):
    execute(complex_db, ["create role dbtasks_reader_test", "grant select on users to dbtasks_reader_test"])
    try:
        settings = load_settings({"database_url": url_str(complex_db)})
        schema = read(complex_db)
        sql = diagram.dump_schema(settings, complex_db, schema, DocsOptions())
        assert sql.startswith(diagram.SCHEMA_HEADER)
        assert "CREATE TABLE billing.invoices (" in sql and "CREATE TYPE public.mood AS ENUM" in sql
        assert "alembic_version" not in sql
        for noise in ("Dumped by", "Dumped from", "\\restrict", "SET statement_timeout", "OWNER TO", "GRANT ", "Owner:"):
            assert noise not in sql, noise
        assert "\n\n\n" not in sql
        assert sql == diagram.dump_schema(settings, complex_db, schema, DocsOptions())  # stable

        kept = diagram.dump_schema(settings, complex_db, schema, DocsOptions(owners=True, privileges=True))
        assert "OWNER TO" in kept and "GRANT SELECT ON TABLE public.users TO dbtasks_reader_test;" in kept

        only = DocsOptions(schemas=("billing",))
        billing = diagram.dump_schema(settings, complex_db, read(complex_db, schemas=("billing",)), only)
        assert "billing.invoices" in billing and "CREATE TABLE public.users" not in billing
    finally:
        execute(complex_db, ["drop owned by dbtasks_reader_test", "drop role dbtasks_reader_test"])


# -- options --------------------------------------------------------------------


def test_options_come_from_pyproject_then_flags(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dbtasks.diagram]\noutput_dir = "doc/db"\nschemas = ["public", "billing"]\nexclude = "a_*, b_*"\nowners = true\n'
    )
    settings = load_settings(project_dir=tmp_path, environ={})
    opts = diagram.docs_options(settings)
    assert opts == DocsOptions(output_dir="doc/db", schemas=("public", "billing"), exclude=("a_*", "b_*"), owners=True)
    flags = load_settings({"diagram_schemas": ["x"], "diagram_owners": False}, project_dir=tmp_path, environ={})
    opts = diagram.docs_options(flags)
    assert opts.schemas == ("x",) and opts.owners is False and opts.exclude == ("a_*", "b_*")
    assert flags.sources["diagram_schemas"] == "flag" and flags.sources["diagram_exclude"] == "pyproject"
    environ = load_settings(project_dir=tmp_path, environ={"DBTASKS_DIAGRAM_SCHEMAS": "y,z"})
    assert diagram.docs_options(environ).schemas == ("y", "z")

    (tmp_path / "pyproject.toml").write_text('[tool.dbtasks.diagram]\ncolour = "red"\n')
    with pytest.raises(Exception, match="unknown key 'colour' in \\[tool.dbtasks.diagram\\]"):
        load_settings(project_dir=tmp_path, environ={})


def test_display_type_short_forms():
    assert diagram.display_type("timestamp with time zone") == "timestamptz"
    assert diagram.display_type("timestamp(6) without time zone[]") == "timestamp(6)[]"
    assert diagram.display_type("time with time zone") == "timetz"
    assert diagram.display_type("character varying(20)[]") == "varchar(20)[]"
    assert diagram.display_type("character(3)") == "char(3)"
    assert diagram.display_type("double precision") == "float8"
    assert diagram.display_type("bit varying(8)") == "varbit(8)"


# -- the committed docs of the example application ------------------------------


def test_committed_docs_match_the_migrations(dbtasks_server_url):
    """docs/database/ is what check-db-docs regenerates from this repository's migrations."""
    settings = load_settings({"database_url": url_str(dbtasks_server_url)}, project_dir=REPO)
    result = check_db_docs(settings)
    assert result.ok, "\n".join(f.message for f in result.findings)


def test_committed_docs_do_not_depend_on_the_postgresql_major(dbtasks_server_url):
    """Another server major version with its own pg_dump regenerates the same bytes."""
    from dbtasks.database import server_version
    from dbtasks.server import binary_major_version, pgserver_bin_dir
    from dbtasks.testing import throwaway_server

    bundled = pgserver_bin_dir()
    if bundled is None:
        pytest.skip("the pgserver wheel's PostgreSQL is not installed")
    if binary_major_version(bundled) == server_version(dbtasks_server_url) // 10000:
        pytest.skip("the test server already runs the pgserver wheel's major version")
    with throwaway_server(pg_bin=str(bundled)) as url:
        # A second throwaway server is a development server too: list it, or its scratch database would move.
        result = check_db_docs(load_settings({"database_url": url_str(url), "dev_databases": [f"{url.host}:{url.port}"]}, project_dir=REPO))
    assert result.ok, "\n".join(f.message for f in result.findings)


def test_readme_shows_the_current_diagram():
    """The kit's README marks its diagram, so regenerate-db-diagram keeps it current."""
    readme = (REPO / "README.md").read_text()
    blocks = readme_blocks.find_blocks(readme)
    assert len(blocks) == 1
    mmd = (REPO / "docs/database/diagram.mmd").read_text()
    assert readme_blocks.stale_blocks(readme, mmd, blocks) == []
    assert readme[blocks[0].start:blocks[0].end] == f"```mermaid\n{mmd}```\n"
    assert "docs/database/diagram.svg" in readme


# -- the README's marked block (no database needed) ------------------------------

B, E = readme_blocks.BEGIN, readme_blocks.END
MMD = "erDiagram\n    users {\n        bigint id PK\n    }\n"


def test_readme_block_is_refreshed_between_the_markers_only():
    text = f"# App\r\n\r\nintro\r\n{B}\r\nold picture\r\n{E}\r\ntail without newline"
    blocks = readme_blocks.find_blocks(text)
    fresh = readme_blocks.refresh(text, MMD, blocks)
    head, _, rest = fresh.partition(f"{B}\r\n")
    body, _, tail = rest.partition(E)
    assert head == "# App\r\n\r\nintro\r\n" and tail == "\r\ntail without newline"  # untouched, CRLF kept
    assert body == "```mermaid\r\n" + MMD.replace("\n", "\r\n") + "```\r\n"
    assert readme_blocks.refresh(fresh, MMD, readme_blocks.find_blocks(fresh)) == fresh  # idempotent
    assert readme_blocks.stale_blocks(fresh, MMD, readme_blocks.find_blocks(fresh)) == []
    assert len(readme_blocks.stale_blocks(text, MMD, blocks)) == 1

    # two marked places both get the diagram; markers shown in an example fence or indented are not markers
    doc = f"{B}\n{E}\n````markdown\n{B}\n```mermaid\n```\n{E}\n````\n    {B}\n`{B}` inline\n{B}\n{E}\n"
    blocks = readme_blocks.find_blocks(doc)
    assert [b.line for b in blocks] == [1, 11]
    fresh = readme_blocks.refresh(doc, MMD, blocks)
    assert fresh.count("```mermaid\n" + MMD + "```\n") == 2
    assert fresh.endswith(f"````markdown\n{B}\n```mermaid\n```\n{E}\n````\n    {B}\n`{B}` inline\n{B}\n```mermaid\n{MMD}```\n{E}\n")

    assert readme_blocks.find_blocks("# no markers\n```mermaid\nerDiagram\n```\n") == []


@pytest.mark.parametrize("text, words", [
    (f"x\n{B}\n```mermaid\n```\n", ("README.md line 2", f"has no {E} after it")),
    (f"{E}\n", ("README.md line 1", f"has no {B} before it")),
    (f"{B}\n{B}\n{E}\n", ("line 1", "before the next begin marker (line 2)")),
])
def test_readme_markers_that_do_not_pair_up_are_one_clear_error(text, words):
    with pytest.raises(readme_blocks.ReadmeMarkerError) as err:
        readme_blocks.find_blocks(text)
    line = str(err.value)
    assert "\n" not in line and "regenerate-db-diagram" in line
    for word in words:
        assert word in line, (word, line)
