"""db-migrate-sql: the SQL db-migrate would run, revision by revision, with squawk's findings."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from dbtasks.config import load_settings
from dbtasks.errors import ConfigError

from .conftest import assert_one_line_error, run, run_just, run_make, scalar, url_str

HEAD = "f689c66d672f"
CLOSED_URL = "postgresql://u:pw@127.0.0.1:9/nowhere"  # FROM= needs no database: nothing may connect


def add_revision(project: Path, rev: str, down: str, message: str, body: str) -> Path:
    path = project / "alembic" / "versions" / f"2026_11_22_{rev}_{message.replace(' ', '_')}.py"
    path.write_text(
        f'"""{message}\n\nRevision ID: {rev}\nRevises: {down}\nCreate Date: 2026-11-22\n\n"""\n\n'
        "import sqlalchemy as sa\n\nfrom alembic import op\n\n"
        f'revision = "{rev}"\ndown_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade() -> None:\n{body}\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    return path


ADD_PHONE = (
    '    op.add_column("users", sa.Column("phone", sa.String(length=30), nullable=False))\n'
    '    op.create_index("ix_users_phone", "users", ["phone"])'
)
ADD_NOTE = '    op.add_column("projects", sa.Column("note", sa.Text(), nullable=True))'
READS_DATA = (
    "    conn = op.get_bind()\n"
    '    for (uid,) in conn.execute(sa.text("select id from users")).fetchall():\n'
    "        conn.execute(sa.text(\"update users set phone = 'x' where id = :id\"), {\"id\": uid})"
)


def lines_before(text: str, needle: str) -> list[str]:
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if needle in line)
    return lines[:index]


def test_pending_revision_prints_its_sql_with_squawk_comments(project: Path, dbtasks_database: URL):
    """The example app with one pending revision: its SQL, squawk's findings above the statements, nothing run."""
    add_revision(project, "aaaa00000001", HEAD, "add phone", ADD_PHONE)
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    proc = run_make("db-migrate-sql", project, **env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"1 revision(s) from {HEAD} (database " in out
    assert "-- Revision aaaa00000001: add phone (alembic/versions/2026_11_22_aaaa00000001_add_phone.py)" in out
    assert HEAD + ":" not in out  # the applied revision is not shown
    before_alter = lines_before(out, "ALTER TABLE users ADD COLUMN phone VARCHAR(30) NOT NULL;")
    assert before_alter[-1].startswith("-- squawk: adding-required-field: "), out
    before_index = lines_before(out, "CREATE INDEX ix_users_phone ON users (phone);")
    assert before_index[-1].startswith("-- squawk: require-concurrent-index-creation: "), out
    assert "UPDATE alembic_version SET version_num='aaaa00000001'" in out
    assert out.index("BEGIN;") < out.index("ALTER TABLE") < out.index("COMMIT;")
    # A preview: the database is where it was.
    assert scalar(dbtasks_database, "select version_num from alembic_version") == HEAD
    assert scalar(dbtasks_database, "select count(*) from information_schema.columns where column_name = 'phone'") == 0
    # Up to date: nothing to print, exit 0.
    run(["upgrade"], project, **env)
    proc = run_just(["db-migrate-sql"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert "0 revision(s) from aaaa00000001" in proc.stdout and "nothing to do" in proc.stdout


def test_a_revision_that_reads_data_is_named_not_skipped(project: Path):
    """A revision that cannot render offline is named with its file and line; the others still render; exit 1."""
    add_revision(project, "aaaa00000001", HEAD, "add phone", ADD_PHONE)
    path = add_revision(project, "aaaa00000002", "aaaa00000001", "backfill phone", READS_DATA)
    add_revision(project, "aaaa00000003", "aaaa00000002", "add note", ADD_NOTE)
    proc = run(["migrate-sql", "--from", HEAD], project, DATABASE_URL=CLOSED_URL)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    out = proc.stdout
    assert "-- Revision aaaa00000002: backfill phone" in out
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "fetchall" in text)
    assert f"-- NOT RENDERED: cannot be rendered offline (AttributeError: 'NoneType' object has no attribute 'fetchall' at {path.relative_to(project)}:{line})" in out
    assert "ALTER TABLE users ADD COLUMN phone" in out and "ALTER TABLE projects ADD COLUMN note TEXT;" in out
    assert out.index("aaaa00000001: add phone") < out.index("aaaa00000002: backfill") < out.index("aaaa00000003: add note")
    warnings = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("warning: revision aaaa00000002 ") and "Traceback" not in proc.stderr


def test_from_and_to_select_a_range(project: Path):
    """FROM=/TO= print exactly the revisions after FROM up to TO; FROM=base starts with the version table."""
    add_revision(project, "aaaa00000001", HEAD, "add phone", ADD_PHONE)
    add_revision(project, "aaaa00000003", "aaaa00000001", "add note", ADD_NOTE)
    env = {"DATABASE_URL": CLOSED_URL}
    proc = run_make("db-migrate-sql", project, "FROM=aaaa00000001", "TO=aaaa00000003", **env)
    assert proc.returncode == 0, proc.stderr
    assert "-- Revision aaaa00000003: add note" in proc.stdout
    assert "aaaa00000001: add phone" not in proc.stdout and "ADD COLUMN phone" not in proc.stdout
    proc = run_just(["db-migrate-sql", "base", "aaaa00000001"], project, **env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "2 revision(s) from base (FROM) to aaaa00000001" in out
    # The version table db-migrate creates on an empty database belongs to the first revision's part.
    assert out.index(f"-- Revision {HEAD}: initial schema") < out.index("CREATE TABLE alembic_version") < out.index("CREATE TABLE users")
    assert out.index(f"-- Revision {HEAD}") < out.index("-- Revision aaaa00000001") and "add note" not in out
    # A unique prefix names a revision, as with alembic.
    proc = run(["migrate-sql", "--from", HEAD[:6], "--to", "aaaa00000001"], project, **env)
    assert proc.returncode == 0 and f"1 revision(s) from {HEAD} (FROM) to aaaa00000001" in proc.stdout, proc.stderr


def test_to_below_from_is_refused(project: Path):
    add_revision(project, "aaaa00000001", HEAD, "add phone", ADD_PHONE)
    proc = run_make("db-migrate-sql", project, "FROM=aaaa00000001", f"TO={HEAD}", DATABASE_URL=CLOSED_URL)
    assert_one_line_error(proc, f"TO={HEAD} is below FROM (aaaa00000001)", "previews upgrades only", "make db-migrate-history")
    proc = run(["migrate-sql", "--from", "aaaa00000001", "--to", HEAD], project, DATABASE_URL=CLOSED_URL)
    assert_one_line_error(proc, f"--to {HEAD} is below --from", "dbtasks history")


def test_allowed_rules_are_marked_and_missing_squawk_is_one_note(project: Path, monkeypatch: pytest.MonkeyPatch):
    """`# dbtasks: allow <rule>: <why>` shows next to the finding; without squawk the SQL still prints, with one note."""
    from dbtasks import preview
    from dbtasks.checks import lint

    path = add_revision(project, "aaaa00000001", HEAD, "add phone", ADD_PHONE)
    path.write_text(path.read_text() + "\n# dbtasks: allow require-concurrent-index-creation: users is tiny\n")
    monkeypatch.chdir(project)
    settings = load_settings({"database_url": CLOSED_URL}, project_dir=project)
    found = preview.migrate_sql(settings, HEAD)
    text = found.script()
    assert "-- squawk: require-concurrent-index-creation: " in text and "(allowed in the revision: users is tiny)" in text
    assert found.notes == []

    def missing() -> str:
        raise ConfigError("squawk is not installed", "pip install 'dbtasks[lint]'")

    monkeypatch.setattr(lint, "find_squawk", missing)
    found = preview.migrate_sql(settings, HEAD)
    assert "ALTER TABLE users ADD COLUMN phone" in found.script() and "-- squawk:" not in found.script()
    assert len(found.notes) == 1 and found.notes[0].startswith("squawk's findings not shown: squawk is not installed"), found.notes


def test_a_single_transaction_env_gets_squawk_comments_of_the_transaction_it_runs_in(tmp_path: Path):
    """A stock `alembic init` env.py renders one BEGIN ... COMMIT around every revision: each revision is
    judged inside it (no index flagged on a table made in the same revision, no transaction-nesting or
    uncommitted-transaction comment), and an index on an earlier revision's table is still flagged."""
    from .test_checks_lint import INITIAL, _stock_project, _write_revision

    project = _stock_project(tmp_path)
    _write_revision(project, "d1d8fc7765cd", None, INITIAL)
    _write_revision(project, "e2e2e2e2e202", "d1d8fc7765cd", '    op.create_index("ix_orders_created", "orders", ["created_at"])\n')
    _write_revision(project, "f3f3f3f3f303", "e2e2e2e2e202", '    op.add_column("users", sa.Column("name", sa.Text()))\n')
    proc = run(["-c", str(project / "alembic.ini"), "migrate-sql", "--from", "base"], project, DATABASE_URL="postgresql://u:pw@127.0.0.1:9/none")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    first, second, third = proc.stdout.split("-- Revision ")[1:]
    assert "-- squawk:" not in first and "-- squawk:" not in third, proc.stdout
    assert lines_before(second, "CREATE INDEX ix_orders_created")[-1].startswith("-- squawk: require-concurrent-index-creation:"), second
    assert second.count("-- squawk:") == 1, second
