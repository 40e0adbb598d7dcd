"""heads (`db-check-heads`), merge and linearize (`db-migrate-linearize`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from .checks_helpers import example
from .conftest import DBTASKS, assert_one_line_error, run, url_str


def versions(project: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((project / "migrations" / "versions").glob("*.py"))}


def test_one_head_passes(tmp_path):
    proc = run(["check-heads"], example("clean", tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "heads: ok" in proc.stdout


def test_two_heads_fail_naming_each_head_file_and_both_fixes(tmp_path):
    proc = run(["check-heads"], example("two_heads", tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    assert "heads/multiple-heads [c1c1c1c1c101] migrations/versions/2026_01_02_c1c1c1c1c101_add_bio.py" in out
    assert "heads/multiple-heads [d1d1d1d1d101] migrations/versions/2026_01_02_d1d1d1d1d101_add_age.py" in out
    assert "add users.bio" in out and "add users.age" in out
    assert "`dbtasks merge-heads`" in out and "`dbtasks linearize`" in out


def test_merge_heads_fixes_two_heads_and_the_merged_history_roundtrips(tmp_path, dbtasks_server_url):
    project = example("two_heads", tmp_path)
    (project / "migrations" / "script.py.mako").write_text((Path(__file__).parents[1] / "alembic" / "script.py.mako").read_text())
    proc = run(["merge-heads"], project)
    assert proc.returncode == 0, proc.stderr
    assert run(["check-heads"], project).returncode == 0
    proc = run(["check-roundtrip"], project, DATABASE_URL=url_str(dbtasks_server_url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 revision(s) walked" in proc.stderr


@pytest.mark.slow
def test_linearize_moves_a_branch_of_several_revisions(tmp_path, empty_database):
    project = example("two_heads_branches", tmp_path)
    before = versions(project)
    proc = run(["linearize"], project, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "moved d2d2d2d2d201, d2d2d2d2d202 onto c2c2c2c2c202 (was on a0a0a0a0a001)" in proc.stdout
    after = versions(project)
    moved = "2026_01_02_d2d2d2d2d201_add_age.py"
    assert 'down_revision = "c2c2c2c2c202"' in after[moved]
    assert "Revises: c2c2c2c2c202" in after[moved] and "Revises: a0a0a0a0a001" not in after[moved]
    assert {k: v for k, v in after.items() if k != moved} == {k: v for k, v in before.items() if k != moved}
    black = subprocess.run([str(Path(DBTASKS).parent / "black"), "--check", str(project / "migrations" / "versions" / moved)], capture_output=True)
    assert black.returncode == 0
    assert run(["check-heads"], project).returncode == 0
    history = run(["history"], project, DATABASE_URL=url_str(empty_database)).stdout
    assert history.index("-> c2c2c2c2c202") < history.index("c2c2c2c2c202 -> d2d2d2d2d201") < history.index("-> d2d2d2d2d202 (head)")
    assert run(["upgrade"], project, DATABASE_URL=url_str(empty_database)).returncode == 0
    assert run(["linearize"], project, DATABASE_URL=url_str(empty_database)).returncode == 1  # one head: nothing to do


def test_linearize_refuses_when_a_moved_revision_is_applied(tmp_path, empty_database):
    project = example("two_heads_branches", tmp_path)
    env = {"DATABASE_URL": url_str(empty_database)}
    assert run(["upgrade", "d2d2d2d2d202"], project, **env).returncode == 0
    before = versions(project)
    proc = run(["linearize"], project, **env)
    assert_one_line_error(proc, "d2d2d2d2d201, d2d2d2d2d202", "applied in the database", "downgrade them first", "--to a0a0a0a0a001")
    assert versions(project) == before
    # after the suggested downgrade it goes through
    assert run(["downgrade", "--to", "a0a0a0a0a001"], project, **env).returncode == 0
    assert run(["linearize"], project, **env).returncode == 0
