"""`check` (make check / just check): every guardrail, one summary table."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from .checks_helpers import check, example
from .conftest import REPO, assert_one_line_error, copy_project, run, run_just, run_make, tables, url_str

CHECKS = ("heads", "ledger", "lint", "roundtrip", "drift", "rehearse", "masking", "docs")
ROW = re.compile(r"^(?P<check>\S+) +(?P<verdict>ok|FAILED|skipped|not-run) +(?P<errors>\d+) +(?P<warnings>\d+) +\d+\.\d\d(?:  \((?P<why>.*)\))?$")


def summary(stdout: str) -> dict[str, str]:
    """The verdict of each check in the summary table; every row must parse and every check must be there."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"^check +result +errors +warnings +seconds$", line))
    rows = {}
    *table, last = lines[start + 1:]
    failed = [line.split()[0] for line in table if line.split()[1] in ("FAILED", "not-run")]
    assert last.startswith(f"FAILED: {', '.join(failed)}: " if failed else "ok: ") and "error(s)" in last, last
    for line in table:
        m = ROW.match(line)
        assert m, f"not a summary row: {line!r}"
        rows[m["check"]] = m["verdict"]
    assert tuple(rows) == CHECKS, rows
    return rows


def verdicts(**changed: str) -> dict[str, str]:
    """Every check ok except those named. (Project copies carry no migrations.sum and no masking rules: those two checks are skipped.)"""
    return {name: changed.get(name, "skipped" if name in ("ledger", "masking") else "ok") for name in CHECKS}


@pytest.mark.slow
def test_check_passes_on_the_kit_with_make_and_just(tmp_path, dbtasks_server_url):
    project = copy_project(tmp_path / "kit")
    env = {"DATABASE_URL": url_str(dbtasks_server_url)}
    proc = run(["check"], project, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the copy has no docs/database/diagram.mmd: the docs check does not apply
    assert summary(proc.stdout) == verdicts(rehearse="skipped", docs="skipped"), proc.stdout
    assert not [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("error", "warning"))], proc.stdout + proc.stderr
    # with the committed docs, make check runs the docs check too
    shutil.copytree(REPO / "docs", project / "docs")
    proc = run_make("check", project, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert summary(proc.stdout) == verdicts(rehearse="skipped"), proc.stdout


@pytest.mark.slow
def test_check_fails_on_stale_docs_with_just(tmp_path, dbtasks_server_url):
    project = copy_project(tmp_path / "kit")
    shutil.copytree(REPO / "docs", project / "docs")
    mmd = project / "docs" / "database" / "diagram.mmd"
    text = mmd.read_text()
    assert "        text description\n" in text
    mmd.write_text(text.replace("        text description\n", "", 1))
    proc = run_just(["check"], project, DATABASE_URL=url_str(dbtasks_server_url))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert summary(proc.stdout) == verdicts(rehearse="skipped", docs="FAILED"), proc.stdout
    assert "docs/database/diagram.mmd is stale" in proc.stdout
    assert "+        text description" in proc.stdout


def test_check_on_another_project_by_path_names_each_failure(tmp_path, dbtasks_server_url, empty_database):
    project = example("drift_missing_column", tmp_path)
    proc = run(["-c", str(project / "alembic.ini"), "--database-url", url_str(empty_database), "check"], tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # one revision, which starts the history: no rows to rehearse it on
    assert summary(proc.stdout) == verdicts(drift="FAILED", rehearse="skipped", docs="skipped"), proc.stdout
    assert "drift/model-drift " in proc.stdout and "(model models.User)" in proc.stdout
    assert "op.add_column('users', sa.Column('age', sa.Integer(), nullable=True))" in proc.stdout
    assert tables(empty_database) == set()  # only scratch databases were used


def test_multiple_heads_skip_the_migrating_checks(tmp_path, dbtasks_server_url):
    proc = check(["check"], example("two_heads", tmp_path), dbtasks_server_url)
    assert proc.returncode == 1
    blocked = dict.fromkeys(("roundtrip", "drift", "rehearse", "masking", "docs"), "not-run")
    assert summary(proc.stdout) == verdicts(heads="FAILED", **blocked), proc.stdout
    assert "heads/multiple-heads [c1c1c1c1c101]" in proc.stdout and "heads/multiple-heads [d1d1d1d1d101]" in proc.stdout


def test_unloadable_history_still_lints_and_fails(tmp_path, dbtasks_server_url):
    project = example("lint_broken_import", tmp_path)
    proc = check(["check", "--format", "json"], project, dbtasks_server_url)
    assert proc.returncode == 1
    found = {(f["check"], f["rule"], f["revision"]) for f in json.loads(proc.stdout)}
    assert found == {
        ("lint", "import-error", "e2e2e2e2e201"),
        ("lint", "third-party-import", "e2e2e2e2e201"),
        ("lint", "self-contained", "e2e2e2e2e202"),
        ("lint", "empty-downgrade", "e2e2e2e2e202"),
    }
    text = check(["check"], project, dbtasks_server_url)
    assert text.returncode == 1
    assert summary(text.stdout) == {**dict.fromkeys(CHECKS, "not-run"), "lint": "FAILED"}, text.stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path, dbtasks_server_url):
    project = example("clean", tmp_path)
    assert_one_line_error(run(["-c", "nowhere/alembic.ini", "check"], project), "alembic.ini not found", "-c")
    assert_one_line_error(check(["check", "--since", "no-such-ref"], project, dbtasks_server_url), "--since no-such-ref needs a git repository", "--all")
    proc = check(["check"], project, dbtasks_server_url, DBTASKS_REHEARSE_ROWS="0")
    assert_one_line_error(proc, "DBTASKS_REHEARSE_ROWS has an invalid value '0'")
