"""`check` (make check / just check): every guardrail, one summary table."""

from __future__ import annotations

import json
import shutil

from .checks_helpers import check, example
from .conftest import REPO, assert_one_line_error, copy_project, run, run_just, run_make, tables, url_str


def summary(stdout: str) -> dict[str, str]:
    rows = {}
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("check "))
    for line in lines[start + 1:]:
        parts = line.split()
        if len(parts) >= 2:
            rows[parts[0]] = parts[1]
    return rows


def test_check_passes_on_the_kit_with_make_and_just(tmp_path, dbtasks_server_url):
    project = copy_project(tmp_path / "kit")
    env = {"DATABASE_URL": url_str(dbtasks_server_url)}
    proc = run(["check"], project, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = summary(proc.stdout)
    assert [rows[c] for c in ("heads", "lint", "roundtrip", "drift", "rehearse")] == ["ok"] * 5, rows
    for runner in (lambda: run_make("check", project, **env), lambda: run_just(["check"], project, **env)):
        proc = runner()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert summary(proc.stdout)["drift"] == "ok"


def test_check_includes_docs_when_the_project_keeps_them(tmp_path, dbtasks_server_url):
    project = copy_project(tmp_path / "kit")
    if not (REPO / "docs" / "database" / "diagram.mmd").exists():
        return
    shutil.copytree(REPO / "docs", project / "docs")
    proc = run(["check"], project, DATABASE_URL=url_str(dbtasks_server_url))
    assert "docs" in summary(proc.stdout), proc.stdout + proc.stderr


def test_check_on_another_project_by_path_names_each_failure(tmp_path, dbtasks_server_url, empty_database):
    project = example("drift_missing_column", tmp_path)
    proc = run(["-c", str(project / "alembic.ini"), "--database-url", url_str(empty_database), "check"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = summary(proc.stdout)
    assert rows["drift"] == "FAILED" and rows["heads"] == "ok" and rows["roundtrip"] == "ok", rows
    assert "drift/model-drift [a0a0a0a0a001]" in proc.stdout
    assert tables(empty_database) == set()  # only scratch databases were used


def test_multiple_heads_skip_the_migrating_checks(tmp_path, dbtasks_server_url):
    proc = check(["check"], example("two_heads", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1
    rows = summary(proc.stdout)
    assert rows["heads"] == "FAILED" and rows["roundtrip"] == "skipped" and rows["drift"] == "skipped", rows


def test_unloadable_history_still_lints_and_fails(tmp_path, dbtasks_server_url):
    proc = check(["check", "--format", "json"], example("lint_broken_import", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1
    found = {(f["check"], f["rule"], f["revision"]) for f in json.loads(proc.stdout)}
    assert ("lint", "import-error", "e2e2e2e2e201") in found


def test_bad_input_is_one_line_and_exit_2(tmp_path, dbtasks_server_url):
    project = example("clean", tmp_path)
    assert_one_line_error(run(["-c", "nowhere/alembic.ini", "check"], project), "alembic.ini not found", "-c")
    assert_one_line_error(check(["check", "--since", "no-such-ref"], project, dbtasks_server_url), "--since no-such-ref needs a git repository", "--all")
    proc = check(["check"], project, dbtasks_server_url, DBTASKS_REHEARSE_ROWS="0")
    assert_one_line_error(proc, "DBTASKS_REHEARSE_ROWS has an invalid value '0'")
