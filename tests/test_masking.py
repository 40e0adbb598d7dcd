"""Masking: dump-and-restore FROM=prod masks personal data before it reaches the local database.

One "prod" database (the demo data plus a few users), one project copy with
masking rules and one dump-and-restore run serve the module; the other tests
mask copies of prod in-process (a database made from prod as a template).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dbtasks.clients import find_client
from dbtasks.data import masking
from dbtasks.database import connect, create_database, drop_database, scratch_name

from .conftest import assert_one_line_error, copy_project, run, url_str
from .data_helpers import execute, leftover_names, rows, seed, settings_for

RULES = """
[tool.dbtasks.masking]
"users.email" = "email"
"users.name" = "name"
"users.id" = "hash"
"projects.owner_id" = "hash"
"tasks.assignee_id" = "hash"
"comments.author_id" = "hash"
"public.comments.body" = "text:40"
"projects.name" = "keep"
"""

RULE_TABLE = {
    "users.email": "email", "users.name": "name", "users.id": "hash", "projects.owner_id": "hash",
    "tasks.assignee_id": "hash", "comments.author_id": "hash", "public.comments.body": "text:40", "projects.name": "keep",
}  # RULES as a dict, for validate() and DBTASKS_MASKING

TABLES = ("users", "projects", "tasks", "comments", "tags", "task_tags")
JOINS = (
    "select count(*) from projects p join users u on u.id = p.owner_id",
    "select count(*) from tasks t join users u on u.id = t.assignee_id",
    "select count(*) from comments c join users u on u.id = c.author_id",
)


@pytest.fixture(scope="module")
def prod(dbtasks_server_url, dbtasks_template):
    """A migrated database with the demo data and users whose email and name are easy to grep."""
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_prod"), template=dbtasks_template.database)
    seed(url)
    execute(url, "insert into users (email, name) select 'person' || i || '@corp-secret.test', 'Secretname' || i from generate_series(1, 50) i")
    yield url
    drop_database(dbtasks_server_url, url.database)


@pytest.fixture(scope="module")
def originals(prod) -> list[str]:
    values = [v for (v,) in rows(prod, "select email from users union all select name from users")]
    assert len(values) > 50
    return values


@pytest.fixture(scope="module")
def proj(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("masking") / "project")
    with (project / "pyproject.toml").open("a") as fh:
        fh.write(RULES)
    return project


@pytest.fixture(scope="module")
def copied(proj, prod, dbtasks_server_url, dbtasks_template):
    """dump-and-restore FROM=prod into a local database: (process, local url, dumps directory)."""
    local = create_database(dbtasks_server_url, scratch_name("dbtasks_local"), template=dbtasks_template.database)
    execute(local, "insert into users (email, name) values ('local@dev.test', 'Local Dev')")
    dumps = proj / "dumps"
    proc = run(["dump-and-restore"], proj, DATABASE_URL=url_str(local), FROM="prod", PROD_DATABASE_URL=url_str(prod),
               DBTASKS_DUMP_DIR=str(dumps), DBTASKS_MASKING_SEED="seed-one")
    yield proc, local, dumps
    drop_database(dbtasks_server_url, local.database)
    for name in leftover_names(dbtasks_server_url):
        drop_database(dbtasks_server_url, name)


def plain_dump(url) -> str:
    pg_dump = find_client("pg_dump", None).path
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([pg_dump, "--format=plain", f"--dbname={uri}"], capture_output=True, text=True, check=True).stdout


def test_dump_and_restore_masks_before_the_swap_and_keeps_no_raw_dump(copied, prod, originals):
    proc, local, dumps = copied
    assert proc.returncode == 0, proc.stderr
    assert "masked 7 column(s) in 4 table(s) before the swap" in proc.stdout
    assert "deleted as soon as the scratch restore was done" in proc.stdout
    # No original email or name anywhere in the local database or under dumps/.
    text = plain_dump(local)
    leaked = [v for v in originals if v in text]
    assert not leaked, leaked[:5]
    assert "@example.invalid" in text
    files = [p for p in dumps.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert not [v for v in originals if v.encode() in data], path
    assert not [p for p in files if p.suffix == ".dump"], files
    # Same rows, joins on the hashed keys still match, the keys themselves changed.
    for table in TABLES:
        assert rows(local, f"select count(*) from {table}") == rows(prod, f"select count(*) from {table}"), table
    for sql in JOINS:
        assert rows(local, sql) == rows(prod, sql), sql
    assert sorted(rows(local, "select id from users")) != sorted(rows(prod, "select id from users"))
    # projects.name is "keep": unchanged; an identity/serial key's sequence follows the new ids.
    assert sorted(rows(local, "select name from projects")) == sorted(rows(prod, "select name from projects"))
    execute(local, "insert into users (email, name) values ('new@dev.test', 'New')")


def copy_of(prod, server):
    return create_database(server, scratch_name("dbtasks_mask"), template=prod.database)


def test_same_seed_masks_the_same_way_and_another_seed_differently(proj, prod, dbtasks_server_url):
    copies = [copy_of(prod, dbtasks_server_url) for _ in range(3)]
    try:
        for url, key in zip(copies, ("seed-one", "seed-one", "seed-two")):
            report = masking.apply(settings_for(url, proj, masking_seed=key), url)
            assert report.tables["public.users"] > 50
        query = "select id, email, name from users order by email"
        first, again, other = (rows(url, query) for url in copies)
        assert first == again
        assert {r[1] for r in first}.isdisjoint({r[1] for r in other})
        assert all(r[1].startswith("user_") and r[1].endswith("@example.invalid") for r in first)
    finally:
        for url in copies:
            drop_database(dbtasks_server_url, url.database)


def test_bad_rules_are_one_line_against_the_schema(proj, prod):
    settings = settings_for(prod, proj)
    cases = [
        ({"users.emial": "email"}, "table 'users' has no column 'emial'"),
        ({"userz.email": "email"}, "no table 'userz'"),
        ({"users.email": "null"}, "is NOT NULL"),
        ({"users.created_at": "email"}, "email makes text"),
        ({"tags.name": "name"}, "is unique"),
    ]
    with connect(prod) as conn:
        for table, words in cases:
            rules = [masking._parse(k, v, "test") for k, v in table.items()]
            with pytest.raises(masking.MaskingError, match=words):
                masking.validate(settings, conn, rules)
        # A hashed key whose referencing columns have no rule breaks their joins: refused, not warned about.
        with pytest.raises(masking.MaskingError, match=r"foreign key comments.author_id -> users.id is masked differently: users.id is 'hash'"):
            masking.validate(settings, conn, [masking._parse("users.id", "hash", "test")])
        # The same rule on every side of every foreign key passes.
        rules = [masking._parse(k, v, "test") for k, v in RULE_TABLE.items()]
        resolved = masking.validate(settings, conn, rules)
        assert len(resolved) == len(rules)


def test_a_failing_sql_rule_changes_nothing(proj, prod, dbtasks_server_url):
    url = copy_of(prod, dbtasks_server_url)
    try:
        before = rows(url, "select email from users order by id")
        settings = settings_for(url, proj, masking={"users.email": "email", "users.name": "sql:no_such_column"})
        with pytest.raises(masking.MaskingError, match="no_such_column"):
            masking.apply(settings, url)
        assert rows(url, "select email from users order by id") == before
    finally:
        drop_database(dbtasks_server_url, url.database)


def snapshot(url) -> dict:
    """Every row of every demo table, and the database's relations: what "nothing changed" compares."""
    state = {table: sorted(rows(url, f"select t::text from {table} t")) for table in TABLES}
    state["relations"] = sorted(rows(url, "select relname from pg_class where relnamespace = 'public'::regnamespace"))
    return state


def test_a_foreign_key_masked_on_one_side_only_is_refused_before_anything_changes(proj, prod, dbtasks_server_url):
    """users.id hashed, projects.owner_id kept: every copied project would point at a user that no longer exists."""
    url = copy_of(prod, dbtasks_server_url)
    try:
        before = snapshot(url)
        clash = {**RULE_TABLE, "projects.owner_id": "keep"}
        with pytest.raises(masking.MaskingError) as caught:
            masking.apply(settings_for(url, proj, masking=clash, masking_seed="seed-one"), url)
        error = caught.value
        assert error.exit_code == 2
        assert "\n" not in str(error)
        assert error.message.startswith("foreign key projects.owner_id -> users.id is masked differently: "
                                        "users.id is 'hash' (in DBTASKS_MASKING), projects.owner_id is 'keep' (in DBTASKS_MASKING)")
        assert error.remedy == 'give both columns the same rule, e.g. "projects.owner_id" = "hash"'
        assert snapshot(url) == before
        # A column without a rule counts as keep: the same refusal.
        del clash["projects.owner_id"]
        with pytest.raises(masking.MaskingError, match=r"projects.owner_id has no rule \(kept as is\)"):
            masking.apply(settings_for(url, proj, masking=clash, masking_seed="seed-one"), url)
        assert snapshot(url) == before
        # The same rule on both sides: masked, and every join still matches.
        report = masking.apply(settings_for(url, proj, masking=RULE_TABLE, masking_seed="seed-one"), url)
        assert report.tables["public.projects"] > 0
        assert snapshot(url) != before
        for sql in JOINS:
            assert rows(url, sql) == rows(prod, sql), sql
    finally:
        drop_database(dbtasks_server_url, url.database)


def test_rules_whose_sql_the_database_refuses_fail_validation_before_anything_changes(proj, prod, dbtasks_server_url):
    """A typo in sql: and a fixed: value the column's type refuses fail at validation (LIMIT 0 plans, constants fold), not mid-copy."""
    url = copy_of(prod, dbtasks_server_url)
    try:
        execute(url, "alter table users add column phone text, add column score double precision")
        execute(url, "update users set phone = '+49 30 ' || id, score = id")
        before = snapshot(url)
        settings = settings_for(url, proj, masking_seed="seed-one")
        cases = [
            ({"users.phone": "sql:left(phnoe, 3)"}, r"^masking rule 'users.phone' in test: 'sql:left\(phnoe, 3\)' fails on users.phone \(text\): column \"phnoe\" does not exist"),
            ({"users.score": "fixed:abc"}, r"^masking rule 'users.score' in test: 'fixed:abc' fails on users.score \(double precision\): invalid input syntax for type double precision: \"abc\""),
            ({"users.score": "sql:now()"}, r"'sql:now\(\)' fails on users.score \(double precision\): column \"score\" is of type double precision"),
        ]
        with connect(url) as conn:
            for table, words in cases:
                rules = [masking._parse(k, v, "test") for k, v in table.items()]
                with pytest.raises(masking.MaskingError, match=words) as caught:
                    masking.validate(settings, conn, rules)
                assert "\n" not in str(caught.value) and "fix the rule" in caught.value.remedy
            # Good SQL passes, and leaves neither the trial's temporary tables nor its function behind.
            good = [masking._parse(k, v, "test") for k, v in {"users.phone": "sql:left(phone, 3)", "users.score": "fixed:1.5", "users.name": "sql:upper(users.name)"}.items()]
            resolved = masking.validate(settings, conn, good)
            assert len(resolved) == 3
            assert rows(url, "select count(*) from pg_class where relname like 'dbtasks_mask_try%'") == [(0,)]
            conn.commit()
        with pytest.raises(masking.MaskingError, match="phnoe"):
            masking.apply(settings_for(url, proj, masking={"users.email": "email", "users.phone": "sql:left(phnoe, 3)"}), url)
        assert snapshot(url) == before
        report = masking.apply(settings_for(url, proj, masking={"users.email": "email", "users.phone": "sql:left(phone, 3)", "users.score": "fixed:1.5"}), url)
        assert report.tables["public.users"] > 50
        assert rows(url, "select distinct phone, score from users") == [("+49", 1.5)]
    finally:
        drop_database(dbtasks_server_url, url.database)


def test_check_masking_fails_on_a_foreign_key_masked_differently_and_on_sql_the_database_refuses(proj, dbtasks_database):
    import json

    fk = run(["check-masking"], proj, DATABASE_URL=url_str(dbtasks_database), DBTASKS_MASKING=json.dumps({**RULE_TABLE, "projects.owner_id": "keep"}))
    assert_one_line_error(fk, "projects.owner_id -> users.id is masked differently", "users.id is 'hash'", "projects.owner_id is 'keep'",
                          'give both columns the same rule, e.g. "projects.owner_id" = "hash"')
    typo = run(["check-masking"], proj, DATABASE_URL=url_str(dbtasks_database), DBTASKS_MASKING=json.dumps({**RULE_TABLE, "users.name": "sql:left(nmae, 3)"}))
    assert_one_line_error(typo, "masking rule 'users.name' in DBTASKS_MASKING: 'sql:left(nmae, 3)' fails on users.name", 'column "nmae" does not exist')
    good = run(["check-masking"], proj, DATABASE_URL=url_str(dbtasks_database), DBTASKS_MASKING=json.dumps({**RULE_TABLE, "users.name": "sql:left(name, 3)"}))
    assert good.returncode == 0, good.stderr
    assert "masking: ok" in good.stdout and "8 masking rule(s) fit the schema at head" in good.stderr


def test_check_masking_warns_about_personal_columns_without_rules(proj, dbtasks_database):
    proc = run(["check-masking"], proj, DATABASE_URL=url_str(dbtasks_database),
               DBTASKS_MASKING='{"users.email": "email"}')
    assert proc.returncode == 0, proc.stderr
    assert "users.name looks personal" in proc.stdout
    assert "users.email looks" not in proc.stdout
    assert "masking: ok" in proc.stdout
    bad = run(["check-masking"], proj, DATABASE_URL=url_str(dbtasks_database), DBTASKS_MASKING='{"users.email": "scramble"}')
    assert_one_line_error(bad, "unknown strategy 'scramble'", "email")


def test_mask0_needs_the_local_database_named(proj, prod):
    from dbtasks.errors import ProtectedEnvironment
    from dbtasks.safety import confirm_unmasked

    settings = settings_for(prod, proj)
    confirm_unmasked(settings, "prod", confirm=prod.database)
    confirm_unmasked(settings, "prod", ask=lambda prompt: prod.database)
    with pytest.raises(ProtectedEnvironment, match="does not match"):
        confirm_unmasked(settings, "prod", confirm="other")
    with pytest.raises(ProtectedEnvironment, match=r"unmasked \(--no-mask\).*without confirmation"):  # the bare CLI's words
        confirm_unmasked(settings, "prod")


def relation_files_holding(url, values: list[str]) -> list[str]:
    """Files of the database at ``url`` (heap, TOAST, indexes) that hold any of ``values``, after a checkpoint; None when its files cannot be read here."""
    from dbtasks.database import connect

    import sqlalchemy as sa

    with connect(url, autocommit=True) as conn:
        conn.execute(sa.text("checkpoint"))
        data_dir = Path(conn.execute(sa.text("show data_directory")).scalar())
        paths = conn.execute(sa.text("select pg_relation_filepath(oid) from pg_class where relfilenode <> 0 and relpersistence = 'p'")).scalars().all()
    if not data_dir.is_dir():
        return None
    found = []
    for rel in paths:
        for segment in [data_dir / rel, *sorted((data_dir / rel).parent.glob(Path(rel).name + ".*"))]:
            if segment.is_file():
                data = segment.read_bytes()
                if any(v.encode() in data for v in values):
                    found.append(str(segment))
    return found


@pytest.mark.parametrize("mode", ["full", "schema"])
def test_no_original_value_stays_in_the_local_databases_files(mode, proj, prod, originals, dbtasks_server_url, dbtasks_template, tmp_path):
    """MODE=full masks between the rows and the indexes (tables written anew, indexes built from masked values);
    MODE=schema masks tables with indexes (written anew, or updated and rewritten where a foreign key points at them)."""
    local = create_database(dbtasks_server_url, scratch_name("dbtasks_local"), template=dbtasks_template.database)
    try:
        proc = run(["dump-and-restore", "--mode", mode], proj, DATABASE_URL=url_str(local), FROM="prod", PROD_DATABASE_URL=url_str(prod),
                   DBTASKS_DUMP_DIR=str(tmp_path), DBTASKS_MASKING_SEED="seed-one")
        assert proc.returncode == 0, proc.stderr
        assert "masked 7 column(s) in 4 table(s) before the swap" in proc.stdout
        assert not [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")]
        for table in TABLES:
            assert rows(local, f"select count(*) from {table}") == rows(prod, f"select count(*) from {table}"), table
        for sql in JOINS:
            assert rows(local, sql) == rows(prod, sql), sql
        index_sql = "select indexrelid::regclass::text from pg_index join pg_class on pg_class.oid = indrelid where relnamespace = 'public'::regnamespace order by 1"
        assert rows(local, index_sql) == rows(prod, index_sql)
        leaked = relation_files_holding(local, [v for v in originals if v.startswith(("person", "Secretname"))])
        if leaked is None:
            pytest.skip("the server's data directory is not readable here")
        assert leaked == []
        # The check itself sees the values where they are: in prod's files.
        assert relation_files_holding(prod, [v for v in originals if v.startswith("person")])
    finally:
        drop_database(dbtasks_server_url, local.database)


def test_hash_on_a_foreign_key_between_columns_of_different_widths_is_refused(proj, prod, dbtasks_server_url):
    """smallint -> integer: hash permutes 14 bits of one and 30 of the other, so the keys would stop matching.
    The same types on both sides (users.id -> projects.owner_id, both bigint) pass: the module's other tests."""
    url = copy_of(prod, dbtasks_server_url)
    try:
        execute(url, "create table teams (id integer primary key); create table badges (id serial primary key, team_id smallint references teams (id))")
        execute(url, "insert into teams values (1), (2); insert into badges (team_id) values (1), (2)")
        before = snapshot(url)
        rules = {**RULE_TABLE, "teams.id": "hash", "badges.team_id": "hash"}
        with pytest.raises(masking.MaskingError, match=r"foreign key badges.team_id -> teams.id: hash makes a 14-bit permutation of smallint but a 30-bit permutation of integer"):
            masking.apply(settings_for(url, proj, masking=rules, masking_seed="seed-one"), url)
        assert snapshot(url) == before
        execute(url, "alter table badges alter column team_id type integer")
        masking.apply(settings_for(url, proj, masking=rules, masking_seed="seed-one"), url)
        assert rows(url, "select count(*) from badges b join teams t on t.id = b.team_id") == [(2,)]
    finally:
        drop_database(dbtasks_server_url, url.database)
