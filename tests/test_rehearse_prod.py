"""db-rehearse-prod: pending revisions applied to a copy of "prod", each reported with its locks and rewrites.

"prod" is a database on the test server with one narrow table of 1,000,000
rows (one INSERT ... SELECT generate_series, once per module) at the first
revision of tests/examples/rehearse_prod; the two pending revisions add a
nullable column (a brief ACCESS EXCLUSIVE lock, no rewrite) and a column with a
volatile default (the table rewritten under ACCESS EXCLUSIVE).
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from dbtasks.database import connect, create_database, drop_database, scratch_name

from .checks_helpers import example
from .conftest import run, url_str

BRIEF, REWRITE = "e2e2e2e2e202", "e3e3e3e3e303"
ROWS = 1_000_000


@pytest.fixture(scope="module")
def prod(dbtasks_server_url, tmp_path_factory):
    """(project, environment): "prod" with 1M rows at the first revision, and an empty local database."""
    prod_name, local_name = scratch_name("rp_prod"), scratch_name("rp_local")
    prod_url = create_database(dbtasks_server_url, prod_name)
    local_url = create_database(dbtasks_server_url, local_name)
    with connect(prod_url) as conn, conn.begin():
        conn.exec_driver_sql("create table events (id bigint primary key, n integer not null)")
        conn.exec_driver_sql(f"insert into events select i, mod(i, 1000) from generate_series(1, {ROWS}) i")
        conn.exec_driver_sql("create table alembic_version (version_num varchar(32) primary key)")
        conn.exec_driver_sql("insert into alembic_version values ('e1e1e1e1e101')")
    project = example("rehearse_prod", tmp_path_factory.mktemp("rehearse_prod"))
    env = {"DATABASE_URL": url_str(local_url), "PROD_DATABASE_URL": url_str(prod_url)}
    yield project, env
    for name in (prod_name, local_name, f"{local_name}_rehearse_prod"):
        drop_database(dbtasks_server_url, name)


def revisions(proc) -> dict[str, dict]:
    return {r["revision"]: r for r in json.loads(proc.stdout)["revisions"]}


def exclusive(rev: dict) -> dict:
    (lock,) = [lock for lock in rev["locks"] if lock["relation"] == "public.events" and lock["mode"] == "AccessExclusiveLock"]
    return lock


@pytest.mark.slow
def test_rewrite_is_reported_with_its_exclusive_lock_and_a_brief_lock_is_not(prod, dbtasks_server_url):
    """The volatile default: the rewrite and the ACCESS EXCLUSIVE duration (exit 1); the nullable column: brief, no rewrite; then REUSE=1."""
    project, env = prod
    proc = run(["rehearse-prod", "--format", "json"], project, **env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["source"] == "prod" and report["restored"] is True
    revs = revisions(proc)
    assert list(revs) == [BRIEF, REWRITE]
    brief, rewrite = revs[BRIEF], revs[REWRITE]
    assert brief["rewrites"] == []
    assert exclusive(brief)["seconds"] < 0.5
    assert [w["table"] for w in rewrite["rewrites"]] == ["public.events"]
    assert rewrite["rewrites"][0]["rows"] >= ROWS * 0.9
    lock = exclusive(rewrite)
    assert lock["seconds"] > exclusive(brief)["seconds"]
    assert "random()" in lock["statement"]
    assert any("random()" in s["sql"] for s in rewrite["statements"])
    rules = {(f["rule"], f["revision"]) for f in report["findings"]}
    assert ("table-rewrite", REWRITE) in rules and not any(rev == BRIEF for _, rev in rules)
    (finding,) = [f for f in report["findings"] if f["rule"] == "table-rewrite"]
    assert "backfill" in finding["remedy"]
    # The copy is kept at prod's revision (a clone was migrated); the local database is untouched.
    copy = f"{env['DATABASE_URL'].rsplit('/', 1)[1]}_rehearse_prod"
    with connect(dbtasks_server_url.set(database=copy)) as conn:
        assert conn.execute(sa.text("select version_num from alembic_version")).scalar() == "e1e1e1e1e101"

    # REUSE=1 skips the copy (one test, so the 1M-row "prod" is built once even under xdist);
    # with thresholds above what happened there is no finding (exit 0), and the text report has a table per revision.
    proc = run(["rehearse-prod"], project, REUSE="1", DBTASKS_REHEARSE_REWRITE_ROWS="2000000", DBTASKS_REHEARSE_LOCK_THRESHOLD="10min", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "reused" in out
    assert f"revision {BRIEF}" in out and f"revision {REWRITE}" in out
    brief, rewrite = out.split(f"revision {REWRITE}")
    assert "rewritten: none" in brief and "AccessExclusiveLock" in brief
    assert "rewritten: public.events" in rewrite and "AccessExclusiveLock" in rewrite


def test_generated_rows_instead_of_a_copy(tmp_path, db_env):
    """ROWS=n without FROM: the same report on generated rows (no git here: every revision, the first on an empty database)."""
    project = example("rehearse_prod", tmp_path)
    proc = run(["rehearse-prod", "--rows", "50", "--format", "json"], project, **db_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["source"] == "generated (ROWS=50)"
    assert list(revisions(proc)) == [BRIEF, REWRITE]
    assert "50 generated rows in 1 table(s)" in proc.stderr


def test_a_revision_that_fails_on_the_data_is_a_finding(tmp_path, db_env):
    """SET NOT NULL over generated NULLs: fails-on-copy names the revision (exit 1), the report still prints."""
    project = example("rehearse_not_null", tmp_path)
    proc = run(["rehearse-prod", "--rows", "20", "--format", "json"], project, **db_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert [(f["rule"], f["revision"]) for f in report["findings"]] == [("fails-on-copy", "6a6a6a6a6a01")]
    assert "contains null values" in report["revisions"][-1]["error"]


def test_remedies_fit_the_statement():
    from dbtasks.rehearse_prod import remedy_for

    assert "CONCURRENTLY" in remedy_for(["CREATE INDEX ix_n ON events (n)"], False)
    assert "NOT VALID" in remedy_for(["ALTER TABLE posts ADD CONSTRAINT fk FOREIGN KEY(user_id) REFERENCES users (id)"], False)
    assert "VALIDATE" in remedy_for(["ALTER TABLE users ALTER COLUMN age SET NOT NULL"], False)
    assert "batches" in remedy_for(["ALTER TABLE events ADD COLUMN r FLOAT DEFAULT random() NOT NULL"], True)


def test_a_rewrite_gets_the_remedy_of_the_statement_that_rewrote_it():
    """ALTER COLUMN ... TYPE rewrote the table; the CREATE INDEX of the same revision is on another table."""
    from dbtasks.rehearse_prod import Lock, RevisionReport, remedy_for, rewriting_statements

    rev = RevisionReport("abc", "widen ids", None, 3.0, locks=[
        Lock("public.events", "table", "AccessExclusiveLock", 2.5, statement="ALTER TABLE events ALTER COLUMN id TYPE BIGINT"),
        Lock("public.users", "table", "ShareLock", 0.4, statement="CREATE INDEX ix_users_email ON users (email)"),
    ])
    everything = ["ALTER TABLE events ALTER COLUMN id TYPE BIGINT", "CREATE INDEX ix_users_email ON users (email)"]
    assert "CONCURRENTLY" in remedy_for(everything, True)  # what the whole revision would have suggested
    chosen = remedy_for(rewriting_statements(rev, "public.events"), True)
    assert "new column of the new type" in chosen and "CONCURRENTLY" not in chosen
    assert rewriting_statements(rev, "public.other") == []


def test_the_copy_is_masked_before_the_rehearsal(dbtasks_server_url, tmp_path):
    """Masking rules: the copy the rehearsal keeps holds no original value, and the report says it was masked.
    A rule that does not fit the source stops the run before anything is dumped."""
    prod_name, local_name = scratch_name("rp_mprod"), scratch_name("rp_mlocal")
    prod_url = create_database(dbtasks_server_url, prod_name)
    local_url = create_database(dbtasks_server_url, local_name)
    try:
        with connect(prod_url) as conn, conn.begin():
            conn.exec_driver_sql("create table events (id bigint primary key, n integer not null)")
            conn.exec_driver_sql("insert into events select i, i from generate_series(1, 100) i")
            conn.exec_driver_sql("create table people (id bigint primary key, email text not null)")
            conn.exec_driver_sql("insert into people select i, 'secret' || i || '@corp.test' from generate_series(1, 20) i")
            conn.exec_driver_sql("create table alembic_version (version_num varchar(32) primary key)")
            conn.exec_driver_sql("insert into alembic_version values ('e1e1e1e1e101')")
        project = example("rehearse_prod", tmp_path)
        env = {"DATABASE_URL": url_str(local_url), "PROD_DATABASE_URL": url_str(prod_url), "DBTASKS_MASKING_SEED": "s"}
        bad = run(["rehearse-prod"], project, DBTASKS_MASKING='{"people.mail": "email"}', **env)
        assert bad.returncode == 2 and "has no column 'mail'" in bad.stderr, bad.stderr
        proc = run(["rehearse-prod", "--format", "json"], project, DBTASKS_MASKING='{"people.email": "email"}', **env)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        assert any("masked by the masking rules" in note for note in json.loads(proc.stdout)["notes"]), proc.stdout
        with connect(dbtasks_server_url.set(database=f"{local_name}_rehearse_prod")) as conn:
            emails = conn.execute(sa.text("select email from people")).scalars().all()
        assert len(emails) == 20 and not [e for e in emails if "secret" in e]
    finally:
        for name in (prod_name, local_name, f"{local_name}_rehearse_prod"):
            drop_database(dbtasks_server_url, name)
