"""rehearse (`db-rehearse`): the new revisions on a database full of generated rows."""

from __future__ import annotations

from .checks_helpers import check, example, findings, git_history, rules


def rehearse(case, tmp_path, server, new, *args):
    project = example(case, tmp_path)
    git_history(project, new=new)
    return check(["rehearse", "--format", "json", *args], project, server)


def test_not_null_without_default_fails_with_data(tmp_path, dbtasks_server_url):
    proc = rehearse("rehearse_not_null", tmp_path, dbtasks_server_url, ("6a6a6a6a6a01",))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (finding,) = findings(proc)
    assert (finding["rule"], finding["revision"]) == ("fails-with-data", "6a6a6a6a6a01")
    assert 'column "age" of relation "users" contains null values' in finding["message"]
    assert finding["file"] == "migrations/versions/2026_01_02_6a6a6a6a6a01_add_age.py"


def test_unique_over_duplicates_fails_with_data(tmp_path, dbtasks_server_url):
    proc = rehearse("rehearse_unique", tmp_path, dbtasks_server_url, ("6b6b6b6b6b01",))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (finding,) = findings(proc)
    assert (finding["rule"], finding["revision"]) == ("fails-with-data", "6b6b6b6b6b01")
    assert "could not create unique index" in finding["message"]


def test_failing_cast_fails_with_data(tmp_path, dbtasks_server_url):
    proc = rehearse("rehearse_cast", tmp_path, dbtasks_server_url, ("6c6c6c6c6c01",))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (finding,) = findings(proc)
    assert (finding["rule"], finding["revision"]) == ("fails-with-data", "6c6c6c6c6c01")
    assert "invalid input syntax for type integer" in finding["message"]


def test_safe_revision_passes_and_says_how_much_data_it_met(tmp_path, dbtasks_server_url):
    project = example("rehearse_safe", tmp_path)
    git_history(project, new=("6d6d6d6d6d01",))
    proc = check(["rehearse"], project, dbtasks_server_url, DBTASKS_REHEARSE_ROWS="7")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 revision(s) applied to a database at a0a0a0a0a001 with 14 rows in 2 table(s)" in proc.stderr


def test_all_from_base_runs_the_first_revision_empty_and_rehearses_the_rest(tmp_path, dbtasks_server_url):
    """--all starts at base: the first revision creates the tables, then rows, then the others (it used to pass on 0 rows)."""
    project = example("rehearse_not_null", tmp_path)
    proc = check(["rehearse", "--all", "--format", "json"], project, dbtasks_server_url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert rules(proc) == {("fails-with-data", "6a6a6a6a6a01")}
    assert "starts the history, so it ran on an empty database" in proc.stderr


def test_no_new_revision_is_nothing_to_do(tmp_path, dbtasks_server_url):
    project = example("rehearse_not_null", tmp_path)
    git_history(project, new=())
    proc = check(["rehearse"], project, dbtasks_server_url)
    assert proc.returncode == 0 and proc.stdout == "rehearse: ok\n", proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == [
        "note: rehearse: git base 'origin/main' does not exist: using 'main'",
        "note: rehearse: no new revision to rehearse (revisions added or changed since main)",
    ]
