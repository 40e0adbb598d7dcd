"""Other teams' Alembic projects as they are: -c from anywhere, import paths, env.py failures named once,
verdicts that never pass by skipping, history against an unknown revision, a setup file for scratch databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import sqlalchemy as sa

from dbtasks.database import connect

from .checks_helpers import EXAMPLES, example
from .conftest import assert_one_line_error, run, url_str

CORPUS = EXAMPLES / "envpy"


def service(root: Path, env_variant: str = "cookbook") -> Path:
    """services/billing/ inside a repository: alembic.ini with a relative script_location and no prepend_sys_path."""
    billing = root / "services" / "billing"
    shutil.copytree(CORPUS, billing, ignore=shutil.ignore_patterns("variants", "broken", "__pycache__"))
    shutil.copy(CORPUS / "variants" / f"{env_variant}.py", billing / "migrations" / "env.py")
    return billing


def test_dash_c_works_from_the_repository_root_and_from_anywhere(tmp_path, empty_database):
    billing = service(tmp_path / "repo")
    env = {"DATABASE_URL": url_str(empty_database)}
    for cwd, ini in ((tmp_path / "repo", "services/billing/alembic.ini"), (tmp_path, str(billing / "alembic.ini"))):
        proc = run(["-c", ini, "check-migrations"], cwd, **env)
        assert proc.returncode == 0 and proc.stdout == "drift: ok\n", (cwd, proc.stdout, proc.stderr)
    proc = run(["-c", "services/billing/alembic.ini", "upgrade"], tmp_path / "repo", **env)
    assert proc.returncode == 0 and "now at b1b1b1b1b101" in proc.stdout, proc.stderr


def test_a_missing_module_in_env_py_is_one_finding_on_env_py(tmp_path, dbtasks_server_url):
    billing = service(tmp_path / "repo")
    env_py = billing / "migrations" / "env.py"
    env_py.write_text("import no_such_module_abc  # noqa: F401\n" + env_py.read_text())
    proc = run(["-c", str(billing / "alembic.ini"), "check", "--all"], tmp_path, DATABASE_URL=url_str(dbtasks_server_url))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    env_findings = [line for line in proc.stdout.splitlines() if "no_such_module_abc" in line]
    assert len(env_findings) == 1, proc.stdout
    assert "env-py-failed" in env_findings[0] and "migrations/env.py:1" in env_findings[0]
    rows = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line.split()[:1] in (["roundtrip"], ["drift"], ["rehearse"])}
    assert rows["roundtrip"] == "not-run" and rows["drift"] == "not-run" and rows["rehearse"] == "not-run", proc.stdout


def test_roundtrip_alone_on_several_heads_fails_instead_of_passing_by_skipping(tmp_path, dbtasks_server_url):
    project = example("two_heads", tmp_path)
    for args in (["check-roundtrip"], ["check-roundtrip", "--format", "json"]):
        proc = run(args, project, DATABASE_URL=url_str(dbtasks_server_url))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "several heads" in proc.stdout + proc.stderr


def test_history_of_a_database_stamped_with_an_unknown_revision(tmp_path, empty_database):
    billing = service(tmp_path / "repo")
    with connect(empty_database, autocommit=True) as conn:
        conn.execute(sa.text("create table alembic_version (version_num varchar(32) primary key)"))
        conn.execute(sa.text("insert into alembic_version values ('0123456789ab')"))
    proc = run(["-c", str(billing / "alembic.ini"), "history"], tmp_path, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 0, proc.stderr
    assert "b1b1b1b1b101" in proc.stdout and "unexpected" not in proc.stderr
    assert "at revision 0123456789ab, which these files do not have" in proc.stderr
    # Upgrading it is refused in one line; the way out never offers to recreate a server dbtasks does not run.
    proc = run(["-c", str(billing / "alembic.ini"), "upgrade"], tmp_path, DATABASE_URL=url_str(empty_database), DBTASKS_DEV_DATABASES="*")
    assert proc.returncode != 0 and "at revision 0123456789ab, which is not in" in proc.stderr, proc.stderr
    assert "volume-recreate" not in proc.stderr
    from dbtasks.config import load_settings
    from dbtasks.migrations import _afresh

    assert "volume-recreate" in _afresh(load_settings({"db_server": "local"}, project_dir=tmp_path, environ={}), "; or ")


def test_a_history_that_expects_existing_objects_runs_with_a_setup_file(tmp_path, dbtasks_server_url):
    billing = service(tmp_path / "repo")
    first = next((billing / "migrations" / "versions").glob("*a0a0a0a0a001*.py"))
    first.write_text(first.read_text().replace("def upgrade():\n", 'def upgrade():\n    op.execute("insert into legacy.settings values (1)")\n'))
    env = {"DATABASE_URL": url_str(dbtasks_server_url)}
    proc = run(["-c", str(billing / "alembic.ini"), "check-roundtrip", "--format", "json"], tmp_path, **env)
    assert proc.returncode == 1
    (finding,) = json.loads(proc.stdout)
    assert finding["rule"] == "upgrade-failed" and finding["revision"] == "a0a0a0a0a001" and "legacy.settings" in finding["message"]
    assert "scratch_setup" in finding["remedy"]
    setup = billing / "setup.sql"
    setup.write_text("create schema legacy;\ncreate table legacy.settings (id int);\n")
    proc = run(["-c", str(billing / "alembic.ini"), "check-roundtrip"], tmp_path, DBTASKS_SCRATCH_SETUP=str(setup), **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    setup.write_text("create tabel oops;\n")
    proc = run(["-c", str(billing / "alembic.ini"), "check-roundtrip"], tmp_path, DBTASKS_SCRATCH_SETUP=str(setup), **env)
    assert_one_line_error(proc, "scratch_setup", "setup.sql failed", "syntax error")


def test_a_failed_upgrade_names_the_revision_and_its_file(tmp_path, empty_database):
    billing = service(tmp_path / "repo")
    second = next((billing / "migrations" / "versions").glob("*b1b1b1b1b101*.py"))
    second.write_text(second.read_text().replace("def upgrade():\n", 'def upgrade():\n    op.execute("update metrics set n = 1")\n'))
    proc = run(["-c", str(billing / "alembic.ini"), "upgrade"], tmp_path, DATABASE_URL=url_str(empty_database))
    line = assert_one_line_error(proc, "the upgrade of b1b1b1b1b101", "2026_01_02_b1b1b1b1b101_add_bio.py", 'relation "metrics" does not exist')
    assert "the revisions before it stay applied" in line
