"""Protection follows the database (issue 10): the mark inside the database, every route to it,
servers that are not the project's own, read-only shells, scratch databases, retention ages,
restores that say what they do, lock timeouts and retries for any env.py."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtasks.database import make_engine

from .conftest import DBTASKS, assert_one_line_error, clean_env, copy_project, run, run_make, scalar, tables, url_str
from .data_helpers import fingerprint, remote_available, REMOTE, execute, new_database, drop_database, rows

POLICIES = '\n[tool.dbtasks.cleanup.tables]\ntasks = "created_at"\n'
SCRIPT = "def main(connection):\n    connection.exec_driver_sql('delete from tasks')\n"


def mark(url, **extra) -> None:
    proc = run(["protect"], Path.cwd(), DATABASE_URL=url_str(url), **extra)
    assert proc.returncode == 0, proc.stderr


def comment(url) -> str | None:
    return scalar(url, "select shobj_description(oid, 'pg_database') from pg_database where datname = current_database()")


def state(url) -> tuple:
    return scalar(url, "select version_num from alembic_version"), fingerprint(url)


# -- the mark -----------------------------------------------------------------------------


def test_protect_writes_the_mark_keeps_the_comment_and_unprotect_needs_the_name(project, dbtasks_database):
    name = dbtasks_database.database
    execute(dbtasks_database, f"comment on database {name} is 'billing replica'")
    proc = run(["--env", "qa", "protect"], project, QA_DATABASE_URL=url_str(dbtasks_database))
    assert proc.returncode == 0, proc.stderr
    assert comment(dbtasks_database) == "billing replica\ndbtasks: protected (environment qa)"
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    assert_one_line_error(run(["unprotect"], project, **env), "refusing to remove the protection mark", f"--confirm={name}")
    assert_one_line_error(run(["unprotect", "--confirm=nope"], project, **env), "does not match")
    assert "dbtasks: protected" in comment(dbtasks_database)
    proc = run(["unprotect", f"--confirm={name}"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert comment(dbtasks_database) == "billing replica"


def test_make_db_unprotect_with_a_wrong_confirmation_is_one_line(project, dbtasks_database):
    mark(dbtasks_database)
    proc = run_make("db-unprotect", project, "CONFIRM=wrong", DATABASE_URL=url_str(dbtasks_database))
    assert_one_line_error(proc, "does not match", f"CONFIRM={dbtasks_database.database}")
    assert "dbtasks: protected" in comment(dbtasks_database)


def test_protect_on_a_database_the_user_cannot_write(project, dbtasks_database):
    execute(dbtasks_database, "drop role if exists dbtasks_reader", "create role dbtasks_reader login password 'reader-pw'")
    try:
        reader = dbtasks_database.set(username="dbtasks_reader", password="reader-pw")
        proc = run(["protect"], project, DATABASE_URL=url_str(reader))
        assert_one_line_error(proc, "cannot mark protected", "must be owner", "owner or a superuser")
        assert comment(dbtasks_database) is None
    finally:
        execute(dbtasks_database, "drop role if exists dbtasks_reader")


# -- every destructive verb, every route ------------------------------------------------


def _mark_world(project: Path, url, dump: Path):
    """Rows, a dump of them, the mark, cleanup policies and a wiping script in the project."""
    execute(url, "insert into users (email, name) values ('a@x', 'a')")
    proc = run(["dump-db", "-o", str(dump)], project, DATABASE_URL=url_str(url))
    assert proc.returncode == 0, proc.stderr
    mark(url)
    with (project / "pyproject.toml").open("a") as fh:
        fh.write(POLICIES)
    (project / "wipe.py").write_text(SCRIPT)
    return url


@pytest.fixture
def marked(project, dbtasks_database, tmp_path):
    """A marked database at head with rows, a dump of it (tmp_path/it.dump), policies and a script in the project."""
    return _mark_world(project, dbtasks_database, tmp_path / "it.dump")


@pytest.fixture(scope="module")
def refusing(tmp_path_factory, dbtasks_server_url, dbtasks_template):
    """One marked world shared by the every-verb-every-route tests: a refusal changes nothing
    (each test proves it), so one database, dump and project serve them all (per xdist worker)."""
    from dbtasks.database import create_database, drop_database as drop, scratch_name

    root = tmp_path_factory.mktemp("refusing")
    project = copy_project(root / "project")
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_marked"), template=dbtasks_template.database)
    src = create_database(dbtasks_server_url, scratch_name("dbtasks_src"))
    try:
        yield project, _mark_world(project, url, root / "it.dump"), root / "it.dump", src
    finally:
        drop(dbtasks_server_url, url.database)
        drop(dbtasks_server_url, src.database)


VERBS = {
    "upgrade": ["upgrade"],
    "downgrade": ["downgrade"],
    "down-all": ["down-all"],
    "volume-recreate": ["volume-recreate"],
    "restore-db": ["restore-db", "--file", "{dump}"],
    "dump-and-restore": ["dump-and-restore", "--from", "src", "--mode", "full"],
    "seed": ["seed"],
    "run-script": ["run-script", "wipe.py"],
    "cleanup APPLY": ["cleanup", "--apply", "--older-than", "1 day"],
}
ROUTES = ["ENV", "DATABASE_URL", "--database-url", ".env"]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("verb", list(VERBS))
def test_a_marked_database_refuses_every_destructive_verb_by_every_route(refusing, verb, route):
    """The test server is listed as a development server: only the mark protects here."""
    project, marked, dump, src = refusing
    url = url_str(marked)
    args = [a.replace("{dump}", str(dump)) for a in VERBS[verb]]
    env = {"SRC_DATABASE_URL": url_str(src)}
    if route == "ENV":
        args, env["QA_DATABASE_URL"] = ["--env", "qa", *args], url
    elif route == "DATABASE_URL":
        env["DATABASE_URL"] = url
    elif route == "--database-url":
        args = ["--database-url", url, *args]
    else:
        (project / ".env").write_text(f"DATABASE_URL={url}\n")
    before = state(marked)
    try:
        proc = run(args, project, **env)
    finally:
        (project / ".env").unlink(missing_ok=True)  # the project is shared by the other routes
    needle = "refusing to destroy" if verb == "volume-recreate" else f"database {marked.database!r} marked protected"
    assert_one_line_error(proc, needle)
    assert state(marked) == before
    assert "dbtasks: protected" in comment(marked)


def test_confirmation_lets_a_verb_through_and_a_restore_keeps_the_mark(project, marked, tmp_path):
    proc = run(["restore-db", "--file", str(tmp_path / "it.dump"), f"--confirm={marked.database}"], project, DATABASE_URL=url_str(marked))
    assert proc.returncode == 0, proc.stderr
    assert "dbtasks: protected" in comment(marked)


def test_a_server_that_is_not_the_projects_own_is_protected_unless_listed(project, dbtasks_database):
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    before = state(dbtasks_database)
    proc = run(["down-all"], project, DBTASKS_DEV_DATABASES="", **env)
    assert_one_line_error(proc, "a server that is not the project's own", f"--confirm={dbtasks_database.database}")
    assert state(dbtasks_database) == before
    listed = f"{dbtasks_database.host}:{dbtasks_database.port}/{dbtasks_database.database}"
    proc = run(["down-all"], project, DBTASKS_DEV_DATABASES=listed, **env)
    assert proc.returncode == 0, proc.stderr
    assert scalar(dbtasks_database, "select count(*) from alembic_version") == 0


@pytest.mark.skipif(not remote_available(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_the_other_local_server_is_not_ours(project):
    remote = new_database(REMOTE)
    try:
        proc = run(["upgrade"], project, DATABASE_URL=url_str(remote))
        assert_one_line_error(proc, "127.0.0.1:5432", "not the project's own")
        assert "alembic_version" not in tables(remote)
    finally:
        drop_database(REMOTE, remote.database)


def test_unattended_upgrade_goes_forward_only(project, dbtasks_database):
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    assert run(["downgrade", "--to", "base"], project, **env).returncode == 0
    mark(dbtasks_database)
    assert_one_line_error(run(["upgrade"], project, **env), "marked protected")
    proc = run(["upgrade"], project, DBTASKS_UNATTENDED_UPGRADE="1", **env)
    assert proc.returncode == 0, proc.stderr
    head = scalar(dbtasks_database, "select version_num from alembic_version")
    assert_one_line_error(run(["down-all"], project, DBTASKS_UNATTENDED_UPGRADE="1", **env), "marked protected")
    assert scalar(dbtasks_database, "select version_num from alembic_version") == head


def test_volume_recreate_never_leaves_the_projects_own_server(project, dbtasks_database):
    before = state(dbtasks_database)
    proc = run(["--env", "prod", "volume-recreate", f"--confirm={dbtasks_database.database}"], project,
               DB_SERVER="local", PROD_DATABASE_URL=url_str(dbtasks_database))
    assert_one_line_error(proc, "refusing to destroy", "not at the project's own server")
    assert state(dbtasks_database) == before
    assert not (project / "data" / "postgres").exists()


# -- db-shell -----------------------------------------------------------------------------


def test_shell_on_a_protected_database_is_read_only_unless_write_is_confirmed(project, dbtasks_database):
    mark(dbtasks_database)
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    proc = run(["shell"], project, input="create table written (id int);\n", **env)
    assert proc.returncode != 0
    assert "read-only" in proc.stderr and "--write" in proc.stderr
    assert "written" not in tables(dbtasks_database)
    read = run(["shell"], project, input="select count(*) from users;\n", **env)
    assert read.returncode == 0, read.stderr
    assert_one_line_error(run_make("db-shell", project, "WRITE=1", input="create table written (id int);\n", **env), "refusing to open a writable shell", "CONFIRM=")
    assert "written" not in tables(dbtasks_database)
    proc = run(["shell", "--write", f"--confirm={dbtasks_database.database}"], project, input="create table written (id int);\n", **env)
    assert proc.returncode == 0, proc.stderr
    assert "written" in tables(dbtasks_database)


def test_shell_on_an_unprotected_database_writes(project, dbtasks_database):
    proc = run(["shell"], project, input="create table written (id int);\n", DATABASE_URL=url_str(dbtasks_database))
    assert proc.returncode == 0, proc.stderr
    assert "read-only" not in proc.stderr
    assert "written" in tables(dbtasks_database)


# -- scratch databases --------------------------------------------------------------------


def test_checks_never_put_scratch_databases_on_a_protected_server(project, dbtasks_database, dbtasks_server_url):
    env = {"PROD_DATABASE_URL": url_str(dbtasks_database), "TEST_DATABASE_URL": url_str(dbtasks_server_url)}
    proc = run(["--env", "prod", "check-roundtrip"], project, **env)
    assert_one_line_error(proc, "would go to the server of protected environment 'prod'", "TEST_DATABASE_URL")


@pytest.mark.skipif(not remote_available(), reason="no PostgreSQL on 127.0.0.1:5432")
def test_checks_of_a_protected_target_run_on_another_server(project, dbtasks_database):
    # The target's role may not create databases: success proves the scratch went elsewhere.
    execute(dbtasks_database, "drop role if exists dbtasks_nocreate", "create role dbtasks_nocreate login nocreatedb password 'nocreate-pw'")
    try:
        target = dbtasks_database.set(username="dbtasks_nocreate", password="nocreate-pw")
        proc = run(["--env", "prod", "check-roundtrip"], project, PROD_DATABASE_URL=url_str(target), TEST_DATABASE_URL=url_str(REMOTE))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        execute(dbtasks_database, "drop role if exists dbtasks_nocreate")


# -- retention ages -------------------------------------------------------------------------


@pytest.mark.parametrize("age", ["abc", "1 fortnight", "-5 days", "0", "1 year ago", "P0D"])
def test_bad_retention_ages_are_one_line_and_delete_nothing(project, dbtasks_database, age):
    with (project / "pyproject.toml").open("a") as fh:
        fh.write(POLICIES)
    execute(dbtasks_database, "insert into users (email, name) values ('a@x', 'a')")
    before = fingerprint(dbtasks_database)
    proc = run_make("db-cleanup", project, f"OLDER_THAN={age}", "APPLY=1", DATABASE_URL=url_str(dbtasks_database))
    assert_one_line_error(proc, "is not a positive age", "90 days")
    assert fingerprint(dbtasks_database) == before


def test_a_policy_that_dooms_every_row_stops_unless_all_rows(project, dbtasks_database):
    with (project / "pyproject.toml").open("a") as fh:
        fh.write(POLICIES)
    execute(dbtasks_database, "insert into users (email, name) values ('a@x', 'a')")
    user = scalar(dbtasks_database, "select id from users")
    execute(dbtasks_database, f"insert into projects (name, owner_id) values ('p', {user})")
    project_id = scalar(dbtasks_database, "select id from projects")
    for days in (400, 500):
        execute(dbtasks_database, f"insert into tasks (title, project_id, created_at) values ('t', {project_id}, now() - interval '{days} days')")
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    dry = run(["cleanup", "--older-than", "P90D"], project, **env)
    assert dry.returncode == 0, dry.stderr
    line = next(line for line in dry.stdout.splitlines() if "public.tasks" in line)
    assert line.split()[:3] == ["would", "delete", "2"] and "keeps 0" in line and "cutoff" in line and "ALL_ROWS=1" in line
    before = fingerprint(dbtasks_database)
    assert_one_line_error(run(["cleanup", "--older-than", "90 days", "--apply"], project, **env), "every row of public.tasks", "ALL_ROWS=1")
    assert fingerprint(dbtasks_database) == before
    proc = run(["cleanup", "--older-than", "90 days", "--apply", "--all-rows"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert scalar(dbtasks_database, "select count(*) from tasks") == 0


# -- restores say what they do --------------------------------------------------------------


def test_restore_refuses_a_dump_at_an_unknown_revision_unless_forced(project, dbtasks_database, empty_database, tmp_path):
    execute(dbtasks_database, "update alembic_version set version_num = 'feedfacecafe'")
    dump = tmp_path / "future.dump"
    assert run(["dump-db", "-o", str(dump)], project, DATABASE_URL=url_str(dbtasks_database)).returncode == 0
    env = {"DATABASE_URL": url_str(empty_database)}
    proc = run(["restore-db", "--file", str(dump)], project, **env)
    assert_one_line_error(proc, "feedfacecafe", "--force")
    assert tables(empty_database) == set()
    proc = run(["restore-db", "--file", str(dump), "--force"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert scalar(empty_database, "select version_num from alembic_version") == "feedfacecafe"


def test_restore_names_the_sessions_it_ends(project, dbtasks_database, empty_database, tmp_path):
    dump = tmp_path / "it.dump"
    assert run(["dump-db", "-o", str(dump)], project, DATABASE_URL=url_str(dbtasks_database)).returncode == 0
    engine = make_engine(empty_database, connect_args={"application_name": "report-runner"})
    holder = engine.connect()
    try:
        holder.execute(sa.text("select 1"))
        proc = run(["restore-db", "--file", str(dump)], project, DATABASE_URL=url_str(empty_database))
        assert proc.returncode == 0, proc.stderr
        assert "will end 1 session(s)" in proc.stderr and "report-runner" in proc.stderr
    finally:
        try:
            holder.close()
        except Exception:  # noqa: BLE001 - the restore ended this session
            pass
        engine.dispose()


# -- lock_timeout and retries for a stock `alembic init` env.py ----------------------------


STOCK_REVISIONS = {
    "a1_create.py": '''
        revision = "a1a1a1a1a1a1"
        down_revision = None
        from alembic import op
        import sqlalchemy as sa
        def upgrade():
            op.create_table("things", sa.Column("id", sa.Integer, primary_key=True))
        def downgrade():
            op.drop_table("things")
    ''',
    "b2_column.py": '''
        revision = "b2b2b2b2b2b2"
        down_revision = "a1a1a1a1a1a1"
        from alembic import op
        import sqlalchemy as sa
        def upgrade():
            op.add_column("things", sa.Column("label", sa.Text))
        def downgrade():
            op.drop_column("things", "label")
    ''',
}


@pytest.fixture
def stock(tmp_path, empty_database):
    """A project made by `alembic init` (its env.py builds its own engine), at the first revision."""
    root = tmp_path / "stock"
    root.mkdir()
    alembic = str(Path(DBTASKS).parent / "alembic")
    subprocess.run([alembic, "init", "migrations"], cwd=root, check=True, capture_output=True)
    for name, text in STOCK_REVISIONS.items():
        (root / "migrations" / "versions" / name).write_text(textwrap.dedent(text))
    proc = run(["upgrade", "a1a1a1a1a1a1"], root, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 0, proc.stderr
    return root


def _blocked_upgrade(stock, url, retries: str) -> subprocess.Popen:
    env = clean_env(DATABASE_URL=url_str(url), DBTASKS_LOCK_TIMEOUT="200ms", DBTASKS_LOCK_RETRIES=retries)
    return subprocess.Popen([DBTASKS, "upgrade"], cwd=stock, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holder(url):
    engine = make_engine(url, connect_args={"application_name": "long-report"})
    conn = engine.connect()
    conn.execute(sa.text("lock table things in access share mode"))
    conn.execute(sa.text("select 1 from things"))
    return engine, conn


def test_a_stock_env_py_gets_lock_timeout_retries_and_names_the_blocker(stock, empty_database):
    engine, conn = _holder(empty_database)
    try:
        proc = _blocked_upgrade(stock, empty_database, "2")
        out, err = proc.communicate(timeout=120)
    finally:
        conn.rollback()
        conn.close()
        engine.dispose()
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("INFO ")]
    assert [line.split("; retry ")[1].split(" in ")[0] for line in lines[:-1]] == ["1 of 2", "2 of 2"], err
    final = lines[-1]
    assert final.startswith("error: ") and "lock_timeout=200ms" in final and "3 times" in final
    assert "'long-report'" in final and "AccessShareLock on things" in final and "query started" in final
    assert scalar(empty_database, "select version_num from alembic_version") == "a1a1a1a1a1a1"


def test_a_migration_that_gets_its_lock_during_the_retries_succeeds(stock, empty_database):
    engine, conn = _holder(empty_database)
    try:
        proc = _blocked_upgrade(stock, empty_database, "5")
        for line in proc.stderr:
            if "; retry 1 of 5" in line:
                break
        else:
            raise AssertionError("no retry line")
        conn.rollback()
        out, rest = proc.communicate(timeout=120)
    finally:
        conn.close()
        engine.dispose()
    assert proc.returncode == 0, rest
    assert scalar(empty_database, "select version_num from alembic_version") == "b2b2b2b2b2b2"
    assert "label" in {r[0] for r in rows(empty_database, "select column_name from information_schema.columns where table_name = 'things'")}


def test_every_session_gets_lock_timeout_and_the_optional_statement_timeout(project, dbtasks_database):
    proc = run(["shell"], project, input="show lock_timeout;\nshow statement_timeout;\n",
               DATABASE_URL=url_str(dbtasks_database), DBTASKS_LOCK_TIMEOUT="750ms", DBTASKS_STATEMENT_TIMEOUT="2min")
    assert proc.returncode == 0, proc.stderr
    assert "750ms" in proc.stdout and "2min" in proc.stdout
    assert_one_line_error(run(["status"], project, DATABASE_URL=url_str(dbtasks_database), DBTASKS_LOCK_TIMEOUT="5 seconds please"),
                          "DBTASKS_LOCK_TIMEOUT has an invalid value")


def test_a_prod_shell_fed_a_write_is_read_only(project, dbtasks_database):
    """`echo "insert ..." | make db-shell ENV=prod` wrote to prod; now the transaction is read-only."""
    before = fingerprint(dbtasks_database)
    proc = run_make("db-shell", project, "ENV=prod", input="insert into users (email, name) values ('x@y', 'x');\n",
                    PROD_DATABASE_URL=url_str(dbtasks_database))
    assert proc.returncode != 0
    assert "read-only: protected environment 'prod'" in proc.stderr and "read-only transaction" in proc.stderr
    assert fingerprint(dbtasks_database) == before
