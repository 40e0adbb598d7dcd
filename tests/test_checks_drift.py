"""drift (`db-check-migrations`): models against migrations on a scratch database."""

from __future__ import annotations

import re

import pytest

from .checks_helpers import check, example, findings
from .conftest import copy_project, run, scalar, tables, url_str


def test_clean_projects_pass_with_either_env_py_style(tmp_path, dbtasks_server_url):
    for case in ("clean", "clean_url_env"):
        proc = check(["check-migrations"], example(case, tmp_path), dbtasks_server_url)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "drift: ok" in proc.stdout


def test_missing_migration_is_drift_with_rendered_operation_and_remedy(tmp_path, dbtasks_server_url):
    proc = check(["check-migrations"], example("drift_missing_column", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # the finding points at the model that changed, not at a revision
    assert "drift/model-drift models.py:17: the models differ from the migrations (model models.User):" in proc.stdout
    assert "op.add_column('users', sa.Column('age', sa.Integer(), nullable=True))" in proc.stdout
    assert 'dbtasks revision --autogenerate --message "describe the change"' in proc.stdout
    as_json = check(["check-migrations", "--format", "json"], example("drift_missing_column", tmp_path / "j"), dbtasks_server_url)
    assert [(f["rule"], f["revision"], f["file"], f["line"]) for f in findings(as_json)] == [("model-drift", None, "models.py", 17)]


def test_new_enum_value_in_models_is_drift(tmp_path, dbtasks_server_url):
    proc = check(["check-migrations"], example("drift_enum_value", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "model-drift" in proc.stdout and "post_status" in proc.stdout and "archived" in proc.stdout


def test_drift_never_touches_the_configured_database(tmp_path, empty_database):
    project = example("drift_missing_column", tmp_path)
    proc = run(["check-migrations"], project, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 1
    assert tables(empty_database) == set()


def test_unreachable_server_is_one_line_exit_2(tmp_path):
    from dbtasks.testing import free_port

    from .conftest import assert_one_line_error

    proc = run(["check-migrations"], example("clean", tmp_path), DATABASE_URL=f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/x")
    line = assert_one_line_error(proc, "cannot connect")
    assert "secret-pw" not in line


def _change_task_status(project, values):
    models = project / "app" / "models.py"
    text = models.read_text()
    body = "".join(f'    {v} = "{v}"\n' for v in values)
    text = re.sub(r"class TaskStatus\(enum.Enum\):\n(    \w+ = \"\w+\"\n)+", "class TaskStatus(enum.Enum):\n" + body, text)
    models.write_text(text)


@pytest.mark.slow
def test_enum_value_changes_autogenerate_and_roundtrip(tmp_path, dbtasks_database, dbtasks_server_url):
    """alembic-postgresql-enum: adding, then removing a value of a native enum in the models."""
    project = copy_project(tmp_path / "kit")
    env = {"DATABASE_URL": url_str(dbtasks_database)}  # already at head
    # appended: alembic-postgresql-enum 1.11 places a value given "before" another one after it
    _change_task_status(project, ["todo", "doing", "done", "blocked"])
    assert check(["check-migrations"], project, dbtasks_server_url).returncode == 1
    proc = run(["revision"], project, MIGRATE_MSG="add blocked status", **env)
    assert proc.returncode == 0, proc.stderr
    path = max((project / "alembic" / "versions").glob("*.py"), key=lambda p: p.stat().st_mtime)
    assert "sync_enum_values" in path.read_text() or "add_enum_value" in path.read_text()
    assert run(["upgrade"], project, **env).returncode == 0
    labels = "select string_agg(enumlabel, ',' order by enumsortorder) from pg_enum e join pg_type t on t.oid = e.enumtypid where typname = 'task_status'"
    assert scalar(dbtasks_database, labels) == "todo,doing,done,blocked"
    for verb in ("check-migrations", "check-roundtrip"):
        proc = check([verb], project, dbtasks_server_url)
        assert proc.returncode == 0, f"{verb}\n{proc.stdout}\n{proc.stderr}"
    # removing the value again is a migration too
    _change_task_status(project, ["todo", "doing", "done"])
    proc = run(["revision"], project, MIGRATE_MSG="drop blocked status", **env)
    assert proc.returncode == 0, proc.stderr
    assert run(["upgrade"], project, **env).returncode == 0
    assert scalar(dbtasks_database, labels) == "todo,doing,done"
    assert check(["check-migrations"], project, dbtasks_server_url).returncode == 0
