"""Migration verbs end to end through the CLI, against a real PostgreSQL."""

from __future__ import annotations

import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import DBTASKS, REPO, assert_one_line_error, clean_env, copy_project, run, scalar, tables, url_str

APP_TABLES = {"users", "projects", "tasks", "comments", "tags", "task_tags"}


@pytest.fixture
def migrated_env(dbtasks_database) -> dict[str, str]:
    """Environment pointing dbtasks at a fresh database already at head (a clone of the plugin's template)."""
    return {"DATABASE_URL": url_str(dbtasks_database)}


def revision_files(project: Path) -> list[Path]:
    return sorted((project / "alembic" / "versions").glob("*.py"))


def head_of(project: Path, env) -> str:
    proc = run(["heads"], project, **env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


def test_upgrade_status_downgrade_cycle(project, db_env, empty_database):
    proc = run(["status", "--exit-code"], project, **db_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "pending:  1 revision(s)" in proc.stdout and "initial schema" in proc.stdout

    proc = run(["upgrade"], project, **db_env)
    assert proc.returncode == 0, proc.stderr
    assert APP_TABLES <= tables(empty_database)
    assert run(["status", "--exit-code"], project, **db_env).returncode == 0

    proc = run(["downgrade"], project, **db_env)
    assert proc.returncode == 0, proc.stderr
    assert not (APP_TABLES & tables(empty_database))
    assert scalar(empty_database, "select count(*) from pg_type where typname = 'task_status'") == 0


def test_app_models_and_migrations_agree(project, migrated_env):
    proc = subprocess.run([str(Path(DBTASKS).parent / "alembic"), "check"], cwd=project, env=clean_env(**migrated_env), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No new upgrade operations detected" in proc.stdout + proc.stderr


def test_seed_is_idempotent_and_fills_every_table(project, migrated_env, dbtasks_database):
    first = run(["seed"], project, **migrated_env)
    assert first.returncode == 0, first.stderr
    counts = {t: scalar(dbtasks_database, f"select count(*) from {t}") for t in APP_TABLES}
    assert all(n > 0 for n in counts.values()), counts
    assert 300 <= sum(counts.values()) <= 1500
    second = run(["seed"], project, **migrated_env)
    assert second.returncode == 0 and "already present" in second.stdout
    assert counts == {t: scalar(dbtasks_database, f"select count(*) from {t}") for t in APP_TABLES}


def add_model(project: Path) -> None:
    with (project / "app" / "models.py").open("a") as fh:
        fh.write(textwrap.dedent('''

            class Label(Base):
                __tablename__ = "labels"

                id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
                color: Mapped[str] = mapped_column(String(20), server_default="grey")
                project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
        '''))


def test_autogenerate_formats_names_applies_and_reverses(project, migrated_env, dbtasks_database):
    add_model(project)
    before = set(revision_files(project))
    proc = run(["revision", "--autogenerate"], project, MIGRATE_MSG="add labels", **migrated_env)
    assert proc.returncode == 0, proc.stderr
    new = set(revision_files(project)) - before
    assert len(new) == 1
    path = new.pop()
    assert path.name.endswith("_add_labels.py")
    assert path.name[:11].replace("_", "").isdigit()  # 2026_11_21_...
    bin_dir = Path(DBTASKS).parent
    for tool in (["black", "--check"], ["isort", "--check-only", "--profile", "black"], ["autoflake", "--check"]):
        check = subprocess.run([str(bin_dir / tool[0]), *tool[1:], str(path)], cwd=project, capture_output=True, text=True)
        assert check.returncode == 0, (tool, check.stdout, check.stderr)
    assert run(["upgrade"], project, **migrated_env).returncode == 0
    assert "labels" in tables(dbtasks_database)
    assert run(["downgrade"], project, **migrated_env).returncode == 0
    assert "labels" not in tables(dbtasks_database)
    assert APP_TABLES <= tables(dbtasks_database)


def test_message_with_shell_characters_is_data(project, migrated_env, tmp_path):
    message = 'it\'s "quoted"; $(touch pwned1) `touch pwned2` \\ back """ end'
    proc = run(["revision", "--empty"], project, MIGRATE_MSG=message, **migrated_env)
    assert proc.returncode == 0, proc.stderr
    assert not list(project.glob("pwned*")) and not list(tmp_path.glob("pwned*"))
    path = max(revision_files(project), key=lambda p: p.stat().st_mtime)
    compile(path.read_text(), str(path), "exec")
    assert "$(touch pwned1)" in path.read_text()
    assert all(ch.isalnum() or ch in "_." for ch in path.name)


def test_missing_message_changes_nothing(project, db_env):
    before = revision_files(project)
    proc = run(["revision", "--empty"], project, **db_env)
    assert_one_line_error(proc, "MIGRATE_MSG is empty", "dbtasks revision --autogenerate --message")
    assert revision_files(project) == before


def test_autogenerate_refused_when_database_is_behind(project, db_env):
    add_model(project)
    before = revision_files(project)
    proc = run(["revision"], project, MIGRATE_MSG="add labels", **db_env)
    assert_one_line_error(proc, "not up to date", "run `dbtasks upgrade`")
    assert revision_files(project) == before


def test_autogenerate_without_changes_writes_nothing(project, migrated_env):
    before = revision_files(project)
    proc = run(["revision"], project, MIGRATE_MSG="nothing here", **migrated_env)
    assert proc.returncode == 1 and "`dbtasks revision --empty --message ...`" in proc.stderr
    assert revision_files(project) == before


def test_unknown_revision_changes_nothing(project, migrated_env, dbtasks_database):
    head = head_of(project, migrated_env)
    for args in (["upgrade", "deadbeef0000"], ["downgrade", "--to", "deadbeef0000"]):
        assert_one_line_error(run(args, project, **migrated_env), "unknown revision 'deadbeef0000'", "`dbtasks history`")
        assert scalar(dbtasks_database, "select version_num from alembic_version") == head


def test_downgrade_more_steps_than_history(project, migrated_env, dbtasks_database):
    proc = run(["downgrade", "--steps", "5"], project, **migrated_env)
    assert_one_line_error(proc, "more than the 1 revision(s) applied", "down-all")
    assert APP_TABLES <= tables(dbtasks_database)


@pytest.mark.slow
def test_merge_heads(project, migrated_env):
    base_head = head_of(project, migrated_env)
    versions = project / "alembic" / "versions"
    for rev in ("aaaa00000001", "bbbb00000002"):
        (versions / f"2026_01_01_{rev}_branch.py").write_text(
            f'"""branch {rev}\n\nRevision ID: {rev}\nRevises: {base_head}\n"""\n'
            f"revision = {rev!r}\ndown_revision = {base_head!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
    proc = run(["upgrade"], project, **migrated_env)
    assert_one_line_error(proc, "multiple head", "dbtasks merge-heads")
    proc = run(["merge-heads"], project, **migrated_env)
    assert proc.returncode == 0, proc.stderr
    heads = run(["heads"], project, **migrated_env).stdout.strip().splitlines()
    assert len(heads) == 1 and "merge heads" in heads[0]
    merge_file = project / heads[0].rsplit("(", 1)[1].rstrip(")")
    check = subprocess.run([str(Path(DBTASKS).parent / "black"), "--check", str(merge_file)], capture_output=True)
    assert check.returncode == 0
    assert run(["upgrade"], project, **migrated_env).returncode == 0
    assert run(["merge-heads"], project, **migrated_env).returncode == 1  # one head now: nothing to do


def test_database_not_running_says_start_db(project):
    from dbtasks.testing import free_port

    proc = run(["status"], project, DB_SERVER="local", DBTASKS_PG_PORT=str(free_port()))
    assert_one_line_error(proc, "cannot connect", "run `dbtasks start-db`")


def test_wrong_password_is_clear_and_hidden(project, dbtasks_server_url, empty_database):
    bad = empty_database.set(password="definitely-Wrong-pw")
    probe = run(["status"], project, DATABASE_URL=url_str(bad))
    if probe.returncode == 0 or "password authentication failed" not in probe.stderr:
        pytest.skip("this server does not check passwords (trust authentication)")
    line = assert_one_line_error(probe, "password authentication failed", "DATABASE_URL")
    assert "definitely-Wrong-pw" not in probe.stderr + probe.stdout + line


def test_protected_environment_refuses_down_all_without_confirmation(project, empty_database):
    env = {"PROD_DATABASE_URL": url_str(empty_database)}
    # upgrade on prod needs confirmation too (make upgrade-prod-db asks)
    assert_one_line_error(run(["--env", "prod", "upgrade"], project, **env), "protected environment 'prod'", "--confirm=")
    assert "alembic_version" not in tables(empty_database)
    dbname = empty_database.database
    assert run(["--env", "prod", "upgrade", f"--confirm={dbname}"], project, **env).returncode == 0
    head = scalar(empty_database, "select version_num from alembic_version")
    assert_one_line_error(run(["--env", "prod", "down-all"], project, **env), "refusing to undo 1 revision(s)", f"--confirm={dbname}")
    assert_one_line_error(run(["--env", "prod", "down-all", "--confirm=wrongname"], project, **env), "does not match")
    assert_one_line_error(run(["--env", "prod", "volume-recreate"], project, **env), "refusing to destroy")
    assert scalar(empty_database, "select version_num from alembic_version") == head
    proc = run(["--env", "prod", "down-all"], project, DBTASKS_CONFIRM=dbname, **env)
    assert proc.returncode == 0, proc.stderr
    assert not (APP_TABLES & tables(empty_database))


COUNTED_REVISION = '''"""slow revision that records each run

Revision ID: c0c0c0c0c0c0
Revises: {down}
"""
import sqlalchemy as sa
from alembic import op

revision = "c0c0c0c0c0c0"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade():
    op.execute("create table if not exists run_log (id serial primary key, at timestamptz default now())")
    op.execute("insert into run_log default values")
    op.execute("select pg_sleep(1.5)")


def downgrade():
    op.execute("drop table run_log")
'''


def test_two_concurrent_upgrades_migrate_once(project, db_env, empty_database):
    down = revision_files(project)[0].name.split("_")[3]
    (project / "alembic" / "versions" / "2026_11_22_c0c0c0c0c0c0_counted.py").write_text(COUNTED_REVISION.format(down=down))
    procs = [
        subprocess.Popen([DBTASKS, "upgrade"], cwd=project, env=clean_env(**db_env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
    assert scalar(empty_database, "select count(*) from run_log") == 1
    assert scalar(empty_database, "select version_num from alembic_version") == "c0c0c0c0c0c0"
    # one process did the work, the other found nothing to do
    assert sum("nothing to do" in out for out, _ in results) == 1


def test_formatter_failure_is_reported_and_file_kept(tmp_path):
    broken = tmp_path / "2026_01_01_abc_broken.py"
    broken.write_text("def upgrade(:\n    pass\n")
    proc = run(["format-revision", str(broken)], tmp_path)
    assert proc.returncode == 2
    assert "could not format" in proc.stderr and "kept" in proc.stderr
    assert broken.read_text() == "def upgrade(:\n    pass\n"


@pytest.mark.slow
def test_lock_timeout_bounds_a_blocked_migration(project, migrated_env, dbtasks_database):
    """A migration that cannot get its table lock fails fast (no retries asked) and changes nothing."""
    from dbtasks.database import make_engine
    import sqlalchemy as sa

    add_model(project)
    assert run(["revision"], project, MIGRATE_MSG="add labels", **migrated_env).returncode == 0
    head_before = scalar(dbtasks_database, "select version_num from alembic_version")
    engine = make_engine(dbtasks_database)
    try:
        with engine.connect() as blocker:
            blocker.execute(sa.text("lock table projects in access exclusive mode"))  # the new FK needs projects
            proc = run(["upgrade"], project, DBTASKS_LOCK_TIMEOUT="1s", DBTASKS_LOCK_RETRIES="0", **migrated_env)
            blocker.rollback()
    finally:
        engine.dispose()
    assert_one_line_error(proc, "lock_timeout=1s", "DBTASKS_LOCK_TIMEOUT")
    assert "labels" not in tables(dbtasks_database)
    assert scalar(dbtasks_database, "select version_num from alembic_version") == head_before
