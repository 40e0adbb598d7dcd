"""The revision ledger (dbtasks/ledger.py) and its check (dbtasks/checks/ledger.py).

Each scenario is a copy of the example project in its own git repository:
the history is committed on ``main`` (the default branch, so "merged"), and
the test works on a branch ``feature`` from there. The check reads files and
git only, so only the ``make check`` test needs a database.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from dbtasks import ledger
from dbtasks.checks.workspace import Workspace
from dbtasks.config import load_settings

from .conftest import assert_one_line_error, copy_project, run, run_make

HEAD = "f689c66d672f"
INITIAL = "alembic/versions/2026_11_21_f689c66d672f_initial_schema.py"
NO_DB = {"DATABASE_URL": "postgresql://u:pw@127.0.0.1:9/nowhere"}  # nothing here needs a database


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The example project with its ledger, committed on main; checked out on branch feature."""
    project = copy_project(tmp_path / "project")
    ok(run(["ledger", "--init"], project, **NO_DB))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "history")
    git(project, "checkout", "-q", "-b", "feature")
    return project


def edit_upgrade(path: Path, sql: str = "SELECT 1") -> None:
    """A real edit: one more operation at the start of upgrade()."""
    text = path.read_text()
    new = re.sub(r"(def upgrade\(\) -> None:\n(?:    \"\"\".*?\"\"\"\n)?)", rf'\1    op.execute("{sql}")\n', text, count=1, flags=re.S)
    assert new != text
    path.write_text(new)


def new_revision(project: Path, message: str) -> Path:
    proc = ok(run(["revision", "--empty", "-m", message], project, **NO_DB))
    return project / re.search(r"created \w+: (\S+)", proc.stdout)[1]


# -- the hash ----------------------------------------------------------------------------


def test_the_hash_ignores_comments_docstrings_and_formatting_but_not_operations():
    source = '''"""add x

Revision ID: abc
"""
from alembic import op
import sqlalchemy as sa

revision = "abc"
down_revision = None


def upgrade() -> None:
    op.add_column("t", sa.Column("x", sa.String(20), nullable=True))


def downgrade() -> None:
    op.drop_column("t", "x")
'''
    reformatted = '''"""a reworded message

Revision ID: abc
Revises:
"""
from alembic import op
import sqlalchemy as sa

revision = 'abc'  # a comment
down_revision = None


def upgrade() -> None:
    """Add x."""
    # why: the report needs it
    op.add_column(
        't',
        sa.Column('x', sa.String(20), nullable=True),
    )


def downgrade() -> None:
    op.drop_column('t', 'x')
'''
    changed = source.replace("String(20)", "String(40)")
    assert ledger.normalized(source) == ledger.normalized(reformatted)
    assert ledger.normalized(source) != ledger.normalized(changed)
    assert ledger.normalized(source) != ledger.normalized(source.replace('down_revision = None', 'down_revision = "zzz"'))
    black = pytest.importorskip("black")
    assert ledger.normalized(black.format_str(reformatted, mode=black.Mode(line_length=40))) == ledger.normalized(source)
    # A file that does not parse is hashed as text: trailing spaces aside, any change counts.
    assert ledger.normalized("def (:\n") == ledger.normalized("def (:   \r\n")
    assert ledger.normalized("def (:\n") != ledger.normalized("def (: x\n")


# -- the check -------------------------------------------------------------------------


def test_an_edited_merged_revision_fails_make_check_with_one_line_naming_it(repo, db_env):
    edit_upgrade(repo / INITIAL)
    proc = run_make("check", repo, **db_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr  # make turns exit 1 into 2
    errors = [line for line in proc.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stdout
    assert errors[0].startswith(f"error: ledger/edited [{HEAD}] {INITIAL}: revision {HEAD} was edited"), errors[0]
    assert "on main" in errors[0]
    assert "FAILED: ledger" in proc.stdout
    assert f"make db-ledger-accept ACCEPT={HEAD}" in proc.stdout and "make db-migrate-empty" in proc.stdout


def test_edited_merged_revision_fails_until_accepted_with_a_reason(repo):
    edit_upgrade(repo / INITIAL)
    before = (repo / "migrations.sum").read_text()
    proc = run(["check-ledger"], repo, **NO_DB)
    assert proc.returncode == 1 and f"ledger/edited [{HEAD}]" in proc.stdout, proc.stdout + proc.stderr
    # dbtasks ledger says the same and exits 1; --update leaves a merged edit alone.
    proc = run(["ledger"], repo, **NO_DB)
    assert proc.returncode == 1 and re.search(rf"^EDITED\s+{HEAD}", proc.stdout, re.M), proc.stdout
    assert "dbtasks ledger --accept f689c66d672f --reason" in proc.stderr
    assert run(["ledger", "--update"], repo, **NO_DB).returncode == 1
    assert (repo / "migrations.sum").read_text() == before
    # An ACCEPT/REASON left in the environment does not turn the status into an accept.
    proc = run(["ledger"], repo, **NO_DB, ACCEPT=HEAD, REASON="left over")
    assert proc.returncode == 1 and re.search(rf"^EDITED\s+{HEAD}", proc.stdout, re.M), proc.stdout
    assert (repo / "migrations.sum").read_text() == before
    # No reason, no accept; nothing written.
    assert_one_line_error(run(["ledger", "--accept", HEAD], repo, **NO_DB), "needs a reason", f"dbtasks ledger --accept {HEAD} --reason")
    assert_one_line_error(run(["ledger", "--accept", "zzz", "--reason", "r"], repo, **NO_DB), "ACCEPT=zzz matches no revision")
    assert (repo / "migrations.sum").read_text() == before
    # Accepted (through make): the reason stays above the revision's line, and the check passes.
    ok(run_make("db-ledger-accept", repo, f"ACCEPT={HEAD}", "REASON=only adds a no-op statement; nothing to redo", **NO_DB))
    text = (repo / "migrations.sum").read_text()
    assert re.search(rf"^# accepted {HEAD} \d{{4}}-\d\d-\d\d: only adds a no-op statement; nothing to redo\n{HEAD} [0-9a-f]{{64}} {INITIAL}$", text, re.M), text
    proc = ok(run(["check-ledger"], repo, **NO_DB))
    assert "ledger: ok" in proc.stdout
    # The comment survives later writes of the file.
    new_revision(repo, "add y")
    assert f"# accepted {HEAD}" in (repo / "migrations.sum").read_text()


def test_a_revision_only_on_the_branch_may_change_and_update_records_it(repo):
    path = new_revision(repo, "add x")
    rev = re.search(r"_([0-9a-f]{12})_add_x", path.name)[1]
    assert re.search(rf"^{rev} [0-9a-f]{{64}} alembic/versions/{path.name}$", (repo / "migrations.sum").read_text(), re.M)
    ok(run(["check-ledger"], repo, **NO_DB))
    edit_upgrade(path)
    proc = ok(run(["check-ledger"], repo, **NO_DB))  # a warning, not a failure
    assert f"warning: ledger/branch-edited [{rev}]" in proc.stdout and "dbtasks ledger --update" in proc.stdout, proc.stdout
    proc = ok(run(["ledger", "--update"], repo, **NO_DB))
    assert re.search(rf"^recorded\s+{rev}", proc.stdout, re.M), proc.stdout
    proc = ok(run(["check-ledger"], repo, **NO_DB))
    assert "warning" not in proc.stdout
    # Once merged into main, the same kind of edit fails.
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "add x")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "feature")
    edit_upgrade(path, "SELECT 2")
    proc = run(["check-ledger"], repo, **NO_DB)
    assert proc.returncode == 1 and f"error: ledger/edited [{rev}]" in proc.stdout, proc.stdout


def test_merge_heads_records_the_merge_revision_and_removed_revisions_are_dropped(repo):
    first = new_revision(repo, "add x")
    rev = re.search(r"_([0-9a-f]{12})_add_x", first.name)[1]
    # A second head on the same parent, as a second pull request would bring.
    twin = first.with_name(first.name.replace(rev, "abcdef123456"))
    twin.write_text(first.read_text().replace(rev, "abcdef123456"))
    proc = ok(run(["merge-heads"], repo, **NO_DB))
    merge = re.search(r"created merge revision (\w+)", proc.stdout)[1]
    lines = (repo / "migrations.sum").read_text()
    assert re.search(rf"^{merge} [0-9a-f]{{64}} ", lines, re.M) and "abcdef123456" not in lines
    proc = ok(run(["check-ledger"], repo, **NO_DB))
    assert "branch-unrecorded [abcdef123456]" in proc.stdout, proc.stdout
    twin.unlink()
    for path in (repo / "alembic/versions").glob(f"*{merge}*.py"):
        path.unlink()
    proc = ok(run(["ledger", "--update"], repo, **NO_DB))
    assert re.search(rf"^dropped \(no such revision\)\s+{merge}", proc.stdout, re.M), proc.stdout
    assert merge not in (repo / "migrations.sum").read_text()


def test_squashed_replaces_the_removed_lines_with_the_baseline(repo):
    settings = load_settings({}, project_dir=repo, environ={})
    a = new_revision(repo, "add a")
    b = new_revision(repo, "add b")
    a_rev, b_rev = (re.search(r"_([0-9a-f]{12})_", p.name)[1] for p in (a, b))
    # The baseline keeps b's id and gets a new text (what db-squash writes).
    edit_upgrade(b, "SELECT 3")
    assert ledger.squashed(settings, b_rev, b, [HEAD, a_rev, b_rev])
    book = ledger.read(repo / "migrations.sum")
    assert list(book.lines) == [b_rev]
    assert book.lines[b_rev].digest == ledger.digest(b)
    assert book.lines[b_rev].notes[0].endswith(f"baseline {b_rev} replaces itself and the 2 revision(s) before it")
    (repo / "migrations.sum").unlink()
    assert not ledger.squashed(settings, b_rev, b, [a_rev])  # no ledger, nothing written
    assert not (repo / "migrations.sum").exists()


def test_without_a_ledger_check_leaves_it_out_and_the_verb_says_how_to_start_one(repo):
    (repo / "migrations.sum").unlink()
    proc = run(["check-ledger"], repo, **NO_DB)
    assert proc.returncode == 1 and "ledger: not run (no revision ledger (migrations.sum): `dbtasks ledger --init` starts one)" in proc.stdout, proc.stdout
    from dbtasks.checks.ledger import applies

    with Workspace(load_settings({}, project_dir=repo, environ={})) as workspace:
        assert "dbtasks ledger --init" in applies(workspace)
    assert_one_line_error(run(["ledger"], repo, **NO_DB), "there is no revision ledger", "dbtasks ledger --init")
    ok(run(["ledger", "--init"], repo, **NO_DB))
    assert_one_line_error(run(["ledger", "--init"], repo, **NO_DB), "already exists", "dbtasks ledger --update")


def test_outside_git_every_edit_counts_as_merged_and_a_bad_line_is_one_error(tmp_path):
    project = copy_project(tmp_path / "plain")
    ok(run(["ledger", "--init"], project, **NO_DB))
    edit_upgrade(project / INITIAL)
    proc = run(["check-ledger"], project, **NO_DB)
    assert proc.returncode == 1 and f"error: ledger/edited [{HEAD}]" in proc.stdout and "possibly applied" in proc.stdout, proc.stdout
    assert "not in a git repository" in proc.stderr
    (project / "migrations.sum").write_text("f689c66d672f nothex alembic/x.py\n")
    assert_one_line_error(run(["ledger"], project, **NO_DB), "migrations.sum:1 is not a ledger line", "keep both sides' lines", "dbtasks ledger --update")
