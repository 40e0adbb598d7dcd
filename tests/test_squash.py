"""db-squash: one baseline revision replaces base..REV, verified before anything is written.

The headline test squashes a generated 200-revision history (with churn: an
enum, a sequence owned by a column, a view, a function, a trigger, comments,
server defaults) at its 150th revision and proves, on a real PostgreSQL, that
the new history replays to the same catalog snapshot as the old one, that a
database already at revision 180 upgrades to head with no manual step, and
that a database at revision 100 (squashed away) gets one clear line from
status and upgrade.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from dbtasks.checks import snapshot
from dbtasks.database import connect, create_database, drop_database, scratch_name

from .conftest import assert_one_line_error, run, url_str
from .history_helpers import generate_history, rev_id


def git(root: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false", *args],
        capture_output=True, text=True, check=True,
    )
    return proc.stdout


def committed(root: Path) -> Path:
    """``root`` as a git repository with everything committed (db-squash refuses otherwise)."""
    (root / ".gitignore").write_text("__pycache__/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "history")
    return root


def take(url: URL) -> snapshot.Snapshot:
    with connect(url) as conn:
        return snapshot.take(conn)


@pytest.fixture
def databases(dbtasks_server_url: URL):
    """make() an empty database (or a copy of ``template``) on the test server, dropped afterwards."""
    made: list[str] = []

    def make(template: URL | None = None) -> URL:
        name = scratch_name("dbtasks_squash_t")
        made.append(name)
        return create_database(dbtasks_server_url, name, template=template.database if template is not None else None)

    yield make
    for name in made:
        drop_database(dbtasks_server_url, name)


def cli(project: Path, url: URL, *args: str):
    return run(list(args), project, DATABASE_URL=url_str(url))


@pytest.mark.slow
def test_squash_200_revisions_at_150(tmp_path: Path, databases) -> None:
    """The done-when of issue 13 part 2, on the generated chain with churn."""
    project = tmp_path / "chain"
    generate_history(project, 200, churn=True)
    committed(project)
    versions = project / "migrations" / "versions"
    # Each database starts as a copy of the previous one (CREATE DATABASE ... TEMPLATE): the old history is replayed once.
    at_100 = databases()
    assert cli(project, at_100, "upgrade", rev_id(100)).returncode == 0
    at_180 = databases(at_100)
    assert cli(project, at_180, "upgrade", rev_id(180)).returncode == 0
    original = databases(at_180)
    assert cli(project, original, "upgrade").returncode == 0
    fresh = databases()
    before = take(original)

    proc = cli(project, original, "squash", "--upto", rev_id(150))
    assert proc.returncode == 0, proc.stderr
    assert f"into the baseline {rev_id(150)}" in proc.stdout

    files = sorted(p.name for p in versions.glob("*.py"))
    assert len(files) == 51
    baseline = next(versions.glob(f"{rev_id(150)}_*.py")).read_text()
    assert "down_revision = None" in baseline and "CREATE TYPE public.mood" in baseline and "CREATE TRIGGER" in baseline
    import black  # formatted like every revision dbtasks writes

    assert black.format_str(baseline, mode=black.Mode()) == baseline
    assert f"squashed 150 revisions ({rev_id(150)} and the 149 before it)" in proc.stdout
    assert f"down_revision = {rev_id(150)!r}" in next(versions.glob(f"{rev_id(151)}_*.py")).read_text()

    # A fresh database replays the new history to the same schema as the old history's.
    proc = cli(project, fresh, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert take(fresh) == before
    # One base, the same head.
    heads = cli(project, fresh, "heads")
    assert heads.stdout.split()[0] == rev_id(200)

    # A database at 180 (after the baseline) upgrades with no manual step.
    proc = cli(project, at_180, "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert take(at_180) == before
    assert cli(project, at_180, "status", "--exit-code").returncode == 0

    # A database at 100 (squashed away) gets one line naming the one-time step, from status and upgrade.
    for args in (("status",), ("upgrade",)):
        line = assert_one_line_error(cli(project, at_100, *args), rev_id(100), f"baseline {rev_id(150)}", "git switch --detach", "dbtasks upgrade")
        assert "Traceback" not in line
    assert f"folded into the baseline {rev_id(150)}" in cli(project, at_100, "history").stderr


def test_squash_keeps_what_autogenerate_cannot_see(tmp_path: Path, databases) -> None:
    """An extension, a schema, colons and percent signs in SQL, a function body with blank lines: all rebuilt; downgrade drops them."""
    project = tmp_path / "small"
    generate_history(project, 3)
    versions = project / "migrations" / "versions"
    first = next(versions.glob(f"{rev_id(1)}_*.py"))
    first.write_text(first.read_text().replace(
        "def upgrade():\n",
        "def upgrade():\n"
        "    op.execute('CREATE EXTENSION IF NOT EXISTS citext')\n"
        "    op.execute('CREATE SCHEMA audit')\n"
        "    op.execute(sa.text(\"CREATE TABLE audit.log (id serial PRIMARY KEY, what citext DEFAULT 'a:b 50%', at_ text DEFAULT '\\\\:x')\"))\n"
        "    op.execute(\"COMMENT ON TABLE audit.log IS 'who: did what (100%)'\")\n"
        "    op.execute(\"CREATE FUNCTION audit.f() RETURNS int LANGUAGE sql AS $$\\n  SELECT count(*)::int\\n\\n\\n  FROM audit.log  $$\")\n",
    ).replace(
        "def downgrade():\n",
        "def downgrade():\n    op.execute('DROP SCHEMA audit CASCADE')\n    op.execute('DROP EXTENSION citext')\n",
    ))
    original, fresh = databases(), databases()
    assert cli(project, original, "ledger", "--init").returncode == 0  # the checksum ledger follows the squash
    committed(project)
    assert cli(project, original, "upgrade").returncode == 0
    before = take(original)

    proc = cli(project, original, "squash", "--upto", rev_id(2))
    assert proc.returncode == 0, proc.stderr
    ledger = (project / "migrations.sum").read_text()
    assert rev_id(1) not in ledger and rev_id(2) in ledger and rev_id(3) in ledger
    proc = cli(project, original, "check-ledger")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert cli(project, fresh, "upgrade").returncode == 0
    assert take(fresh) == before
    assert "extension citext" not in str(snapshot.difference(before, take(fresh)))
    # The database made before the squash, at head, needs nothing.
    assert cli(project, original, "status", "--exit-code").returncode == 0
    # Downgrading everything leaves nothing behind (the baseline drops exactly what it made).
    proc = cli(project, fresh, "downgrade", "--to", "base")
    assert proc.returncode == 0, proc.stderr
    after = take(fresh)
    assert not after["table"] and "audit" not in after["schema"] and "citext" not in after["extension"]


def test_squash_refusals_change_nothing(tmp_path: Path, databases) -> None:
    """Dirty tree, not an ancestor of every head, unknown, nothing to squash, no git: one line each, no file changed."""
    project = tmp_path / "refuse"
    generate_history(project, 4)
    versions = project / "migrations" / "versions"
    url = databases()

    line = assert_one_line_error(cli(project, url, "squash", "--upto", rev_id(3)), "not in a git repository", "dbtasks squash --upto")
    committed(project)
    edited = next(versions.glob(f"{rev_id(2)}_*.py"))
    text = edited.read_text()
    edited.write_text(text + "# an edit not committed yet\n")
    assert_one_line_error(cli(project, url, "squash", "--upto", rev_id(3)), "git tree is dirty", edited.name, "commit or stash")
    edited.write_text(text)
    # A second head branching off revision 2: revision 3 is not below it.
    (versions / "branch.py").write_text(
        f'"""branch"""\nrevision = "b1"\ndown_revision = {rev_id(2)!r}\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
    )
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "branch")
    state = {p.name: p.read_text() for p in versions.glob("*.py")}
    line = assert_one_line_error(cli(project, url, "squash", "--upto", rev_id(3)), "not an ancestor of head b1", "merge")
    assert "Traceback" not in line
    assert_one_line_error(cli(project, url, "squash", "--upto", "zzz"), "UPTO=zzz", "dbtasks history")
    assert_one_line_error(cli(project, url, "squash", "--upto", rev_id(1)), "nothing to squash", code=1)
    assert_one_line_error(cli(project, url, "squash"), "UPTO is empty", "dbtasks squash --upto")
    assert {p.name: p.read_text() for p in versions.glob("*.py")} == state
    assert git(project, "status", "--porcelain") == ""


def test_squash_leaves_scratch_setup_objects_out_and_refuses_what_it_cannot_rebuild(tmp_path: Path, databases) -> None:
    """Objects the history expects (scratch_setup) are not in the baseline; when a revision alters one,
    the verification fails in one line and nothing is written."""
    project = tmp_path / "setup"
    generate_history(project, 3)
    (project / "setup.sql").write_text("CREATE TABLE legacy (id int PRIMARY KEY);\n")
    committed(project)
    url = databases()
    env = {"DATABASE_URL": url_str(url), "DBTASKS_SCRATCH_SETUP": "setup.sql"}
    versions = project / "migrations" / "versions"

    # A revision that changes a legacy table: the baseline cannot create it on top of the setup.
    first = next(versions.glob(f"{rev_id(1)}_*.py"))
    original = first.read_text()
    first.write_text(original.replace("def upgrade():\n", "def upgrade():\n    op.execute('ALTER TABLE legacy ADD COLUMN note text')\n"))
    git(project, "commit", "-qam", "alter legacy")
    state = {p.name: p.read_text() for p in versions.glob("*.py")}
    proc = run(["squash", "--upto", rev_id(2)], project, **env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing was written" in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert {p.name: p.read_text() for p in versions.glob("*.py")} == state

    # Untouched legacy objects stay out of the baseline, and the squash goes through.
    first.write_text(original)
    git(project, "commit", "-qam", "leave legacy alone")
    proc = run(["squash", "--upto", rev_id(2)], project, **env)
    assert proc.returncode == 0, proc.stderr
    baseline = next(versions.glob(f"{rev_id(2)}_*.py")).read_text()
    assert "legacy" not in baseline and "CREATE TABLE public.t_0001" in baseline
