"""db-schema-load: a database built from schema.sql equals one built by replaying the history.

Equality is the catalog snapshot of :mod:`dbtasks.checks.snapshot` (tables,
columns, types, defaults, constraints, indexes, enums, domains, sequences with
their owning column, views, functions, triggers, extensions, comments), on the
example application and on a generated 200-revision history with churn
(tests/history_helpers.py). Refusals: schema.sql stale (head moved, a revision
edited, SQL edited by hand), missing, partial; the database not empty. The
``schema_load`` setting's two verdicts for init-db and the pytest template.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from dbtasks import migrations, schema_load
from dbtasks.checks import snapshot
from dbtasks.config import load_settings
from dbtasks.database import connect, create_database, drop_database, scratch_name
from dbtasks.diagram.docs import regenerate_db_diagram
from dbtasks.diagram.schema_sql import read_stamp, stamp_schema

from .conftest import REPO, assert_one_line_error, copy_project, run, url_str
from .history_helpers import generate_history, rev_id

HEAD = "f689c66d672f"


def snap(url: URL) -> snapshot.Snapshot:
    with connect(url) as conn:
        taken = snapshot.take(conn)
        conn.rollback()
    return taken


def assert_same(replayed: snapshot.Snapshot, loaded: snapshot.Snapshot) -> None:
    extra, missing, changed = snapshot.difference(replayed, loaded)
    assert (extra, missing, changed) == ([], [], [])


@pytest.fixture
def new_db(dbtasks_server_url: URL):
    """A factory of empty databases on the test server, dropped afterwards."""
    made: list[str] = []

    def make() -> URL:
        name = scratch_name("dbtasks_load")
        made.append(name)
        return create_database(dbtasks_server_url, name)

    yield make
    for name in made:
        drop_database(dbtasks_server_url, name)


def app_project(tmp_path: Path) -> Path:
    """A copy of the example project with its checked-in schema.sql."""
    project = copy_project(tmp_path / "project")
    (project / "docs" / "database").mkdir(parents=True)
    shutil.copy2(REPO / "docs" / "database" / "schema.sql", project / "docs" / "database" / "schema.sql")
    return project


@pytest.fixture(scope="module")
def app_replayed(tmp_path_factory, dbtasks_server_url: URL) -> snapshot.Snapshot:
    """The snapshot of a database the example application's history was replayed into, taken once per module.

    Tests compare what they loaded with it and never change it (the database is dropped once the snapshot is taken).
    """
    project = app_project(tmp_path_factory.mktemp("app"))
    name = scratch_name("dbtasks_load")
    replayed = create_database(dbtasks_server_url, name)
    try:
        migrations.upgrade_scratch(load_settings({"database_url": url_str(replayed)}, project_dir=project), replayed)
        return snap(replayed)
    finally:
        drop_database(dbtasks_server_url, name)


def revision_file(project: Path) -> Path:
    """The example application's one revision file."""
    return next((project / "alembic" / "versions").glob(f"*{HEAD}*.py"))


# -- a generated 200-revision history with churn, replayed once per module ------------


@pytest.fixture(scope="module")
def chain(tmp_path_factory, dbtasks_server_url: URL):
    root = tmp_path_factory.mktemp("chain") / "h200"
    ini = generate_history(root, 200, churn=True)
    settings = load_settings({"database_url": url_str(dbtasks_server_url), "alembic_ini": str(ini)}, project_dir=root)
    regenerate_db_diagram(settings)
    name = scratch_name("dbtasks_replayed")
    replayed = create_database(dbtasks_server_url, name)
    try:
        migrations.upgrade_scratch(settings, replayed)
        yield {"root": root, "settings": settings, "replayed": snap(replayed)}
    finally:
        drop_database(dbtasks_server_url, name)


def test_the_kits_schema_sql_records_its_revision_and_is_current():
    text = (REPO / "docs" / "database" / "schema.sql").read_text()
    stamp = read_stamp(text)
    assert stamp is not None and stamp.revisions == (HEAD,) and stamp.body_matches
    fresh = schema_load.freshness(load_settings(project_dir=REPO))
    assert fresh.current, fresh.reason


def test_stamp_round_trip_and_hand_edits():
    sql = "-- header\n-- more\n\nCREATE TABLE x ();\n"
    stamped = stamp_schema(sql, ["b", "a"], "0" * 64)
    assert stamped.startswith("-- header\n-- more\n-- dbtasks: revision a,b; migrations sha256:" + "0" * 64)
    stamp = read_stamp(stamped)
    assert stamp.revisions == ("a", "b") and stamp.body_matches
    assert not read_stamp(stamped.replace("CREATE TABLE x", "CREATE TABLE y")).body_matches
    assert read_stamp(sql) is None


def test_loaded_equals_replayed_on_the_example_app(tmp_path, new_db, app_replayed):
    project = app_project(tmp_path)
    loaded = new_db()

    proc = run(["schema-load"], project, DATABASE_URL=url_str(loaded))
    assert proc.returncode == 0, proc.stderr
    assert "loaded docs/database/schema.sql into" in proc.stdout and f"now at {HEAD}" in proc.stdout
    assert_same(app_replayed, snap(loaded))
    status = run(["status"], project, DATABASE_URL=url_str(loaded))
    assert "pending:  none, up to date" in status.stdout, status.stdout


def test_the_template_path_loads_and_stamps_a_scratch_database(tmp_path, new_db, app_replayed):
    """What dbtasks_template does under auto: load_scratch, stamped through env.py; equal to a replay."""
    project = app_project(tmp_path)
    loaded = new_db()
    settings = load_settings({"database_url": url_str(loaded)}, project_dir=project)
    fresh = schema_load.should_load(settings, loaded)
    assert fresh is not None
    assert schema_load.load_scratch(settings, loaded, fresh) == [HEAD]
    assert_same(app_replayed, snap(loaded))
    assert migrations.status(settings).up_to_date


def test_loaded_equals_replayed_on_200_revisions_with_churn(chain, new_db):
    loaded = new_db()
    settings = chain["settings"].with_(database_url=url_str(loaded))
    result = schema_load.schema_load(settings)
    assert result.revisions == [rev_id(200)] and result.skipped == 200
    have = snap(loaded)
    # The history's objects autogenerate cannot see are in the snapshot, so their equality is proven too.
    for kind, key in [("enum type", "public.mood"), ("view definition", "public.happy_t_0000"), ("function", "public.touch()"),
                      ("trigger", "public.t_0000.t_0000_touch"), ("sequence owner", "public.ticket_seq"),
                      ("comment", "table t_0000"), ("comment", "column name of table t_0000"), ("comment", "type mood")]:
        assert key in have[kind], (kind, sorted(have[kind]))
    assert_same(chain["replayed"], have)
    assert migrations.status(settings).up_to_date


def test_the_snapshot_tells_a_difference(chain, new_db):
    """The other verdict: a loaded schema that differs (a comment, a default, an index) is reported."""
    loaded = new_db()
    schema_load.schema_load(chain["settings"].with_(database_url=url_str(loaded)))
    with connect(loaded) as conn:
        conn.execute(sa.text("comment on column t_0000.name is 'changed'"))
        conn.execute(sa.text("alter table t_0001 alter column name set default 'x'"))
        conn.execute(sa.text("drop index ix_t_0005_parent_id"))
        conn.execute(sa.text("alter sequence ticket_seq owned by none"))
        conn.commit()
    extra, missing, changed = snapshot.difference(chain["replayed"], snap(loaded))
    assert "index ix_t_0005_parent_id" in missing
    assert any(c.startswith("comment column name of table t_0000:") for c in changed), changed
    assert any(c.startswith("column t_0001.name:") for c in changed), changed
    assert "sequence owner ticket_seq" in missing


# -- refusals: nothing changes --------------------------------------------------------


def test_refuses_a_database_that_is_not_empty(tmp_path, new_db):
    project = app_project(tmp_path)
    url = new_db()
    with connect(url) as conn:
        conn.execute(sa.text("create table mine (id int)"))
        conn.commit()
    proc = run(["schema-load"], project, DATABASE_URL=url_str(url))
    assert_one_line_error(proc, "it is not empty (it has table public.mine)", "dbtasks upgrade")
    with connect(url) as conn:
        assert conn.execute(sa.text("select count(*) from pg_tables where schemaname = 'public'")).scalar() == 1


@pytest.mark.parametrize("case", ["new-revision", "edited-revision", "edited-sql", "no-header", "missing"])
def test_refuses_a_stale_schema_sql(tmp_path, new_db, case):
    project = app_project(tmp_path)
    schema_sql = project / "docs" / "database" / "schema.sql"
    versions = project / "alembic" / "versions"
    words = {
        "new-revision": f"is stale: the revision files changed (added, removed or edited) since it was generated at {HEAD}",
        "edited-revision": f"is stale: the revision files changed (added, removed or edited) since it was generated at {HEAD}",
        "edited-sql": "was edited by hand",
        "no-header": "does not record the revision",
        "missing": "docs/database/schema.sql is missing",
    }[case]
    if case == "new-revision":
        (versions / "abc123_more.py").write_text(
            f'"""more"""\nrevision = "abc123"\ndown_revision = "{HEAD}"\nbranch_labels = None\ndepends_on = None\n\n\n'
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
    elif case == "edited-revision":
        rev = revision_file(project)
        rev.write_text(rev.read_text() + "\n# an edit\n")
    elif case == "edited-sql":
        schema_sql.write_text(schema_sql.read_text().replace("body text NOT NULL", "body text"))
    elif case == "no-header":
        schema_sql.write_text("\n".join(l for l in schema_sql.read_text().splitlines() if not l.startswith("-- dbtasks:")) + "\n")
    else:
        schema_sql.unlink()
    url = new_db()
    proc = run(["schema-load"], project, DATABASE_URL=url_str(url))
    assert_one_line_error(proc, "cannot load the schema:", words, "dbtasks regenerate-db-diagram")
    assert schema_load.database_is_empty(url)


def test_a_failing_load_changes_nothing(tmp_path, new_db):
    """schema.sql runs in one transaction: an error half-way leaves the database empty."""
    project = app_project(tmp_path)
    url = new_db()
    settings = load_settings({"database_url": url_str(url)}, project_dir=project)
    fresh = schema_load.freshness(settings)
    with pytest.raises(Exception, match="nothing was created"):
        schema_load.run_schema_sql(settings, url, fresh.sql + "\nCREATE TABLE public.users (id int);\n")
    assert schema_load.database_is_empty(url)


# -- the schema_load setting: init-db and the pytest template --------------------------


def test_init_db_loads_a_new_database_and_replays_when_told(tmp_path, new_db):
    project = app_project(tmp_path)
    auto, never = new_db(), new_db()
    loaded = run(["init-db"], project, DATABASE_URL=url_str(auto))
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded docs/database/schema.sql" in loaded.stdout and f"now at {HEAD}" in loaded.stdout
    replayed = run(["init-db"], project, DATABASE_URL=url_str(never), DBTASKS_SCHEMA_LOAD="never")
    assert replayed.returncode == 0, replayed.stderr
    assert f"upgraded {HEAD}" in replayed.stdout
    assert_same(snap(never), snap(auto))
    again = run(["init-db"], project, DATABASE_URL=url_str(auto))  # not empty any more: an upgrade, nothing to do
    assert again.returncode == 0 and f"nothing to do: the database is at {HEAD}" in again.stdout, again.stdout


def test_should_load_verdicts(tmp_path, new_db):
    """What init/init-db and the pytest template decide: load only when current, empty and auto."""
    project = app_project(tmp_path)
    url = new_db()
    settings = load_settings({"database_url": url_str(url)}, project_dir=project)
    assert schema_load.should_load(settings, url) is not None
    assert schema_load.should_load(settings.with_(schema_load="never"), url) is None
    rev = revision_file(project)
    original = rev.read_text()
    rev.write_text(original + "\n# an edit\n")
    assert schema_load.should_load(settings, url) is None  # stale: replay
    rev.write_text(original)
    with connect(url) as conn:
        conn.execute(sa.text("create sequence s"))
        conn.commit()
    assert schema_load.should_load(settings, url) is None  # not empty: replay (upgrade)
    assert run(["settings"], project, DBTASKS_SCHEMA_LOAD="sometimes").returncode == 2
