"""lint (`db-lint-migrations`): imports, structure, squawk SQL safety, --since, suppression, json."""

from __future__ import annotations

import json

import pytest

from .checks_helpers import example, findings, git, git_history, rules
from .conftest import assert_one_line_error, run

NO_SERVER = {"DATABASE_URL": "postgresql://nobody:pw@127.0.0.1:1/nothing"}  # lint needs no database


def lint(project, *args, **env):
    return run(["lint", "--format", "json", *args], project, **{**NO_SERVER, **env})


def test_clean_and_safe_revisions_pass(tmp_path):
    for case in ("clean", "lint_safe_sql", "lint_suppressed"):
        project = example(case, tmp_path)
        proc = run(["lint", "--all"], project, **NO_SERVER)
        assert proc.returncode == 0, (case, proc.stdout, proc.stderr)
        assert proc.stdout == "lint: ok\n", (case, proc.stdout)
        # every revision was looked at, not none
        n = len(list((project / "migrations" / "versions").glob("*.py")))
        assert proc.stderr == f"note: lint: linted {n} revision(s): all revisions\n", (case, proc.stderr)


def test_json_findings_have_the_documented_keys(tmp_path):
    proc = lint(example("lint_app_import", tmp_path), "--all")
    assert proc.returncode == 1, proc.stderr
    (finding,) = findings(proc)
    assert {"rule", "severity", "revision", "file", "line", "message"} <= set(finding)
    assert finding["rule"] == "self-contained" and finding["revision"] == "e1e1e1e1e101"
    assert finding["file"] == "migrations/versions/2026_01_02_e1e1e1e1e101_seed_admin.py" and finding["line"] == 11
    assert "'models'" in finding["message"] and finding["severity"] == "error"


def test_text_output_names_rule_revision_file_and_line(tmp_path):
    proc = run(["lint", "--all"], example("lint_app_import", tmp_path), **NO_SERVER)
    assert proc.returncode == 1
    assert "error: lint/self-contained [e1e1e1e1e101] migrations/versions/2026_01_02_e1e1e1e1e101_seed_admin.py:11:" in proc.stdout


def test_allow_list_accepts_a_package(tmp_path):
    project = example("lint_app_import", tmp_path)
    proc = lint(project, "--all", DBTASKS_LINT_ALLOWED_IMPORTS="models")
    assert proc.returncode == 0, proc.stdout
    assert findings(proc) == []  # without the allow-list: self-contained (test above)


def test_unimportable_revision_is_a_finding_and_the_others_are_still_linted(tmp_path):
    proc = lint(example("lint_broken_import", tmp_path), "--all")
    assert proc.returncode == 1, proc.stderr
    found = rules(proc)
    assert ("import-error", "e2e2e2e2e201") in found
    assert ("self-contained", "e2e2e2e2e202") in found  # imports the project's helpers module
    assert ("empty-downgrade", "e2e2e2e2e202") in found


def test_structure_rules(tmp_path):
    proc = lint(example("lint_structure", tmp_path), "--all")
    assert proc.returncode == 1
    by_rule = {f["rule"]: f for f in findings(proc)}
    assert by_rule["missing-downgrade"]["revision"] == "f1f1f1f1f101"
    assert by_rule["empty-downgrade"]["revision"] == "f1f1f1f1f102" and by_rule["empty-downgrade"]["severity"] == "warning"
    assert by_rule["down-revision-mismatch"]["revision"] == "f1f1f1f1f103" and "0123456789ab" in by_rule["down-revision-mismatch"]["message"]
    assert by_rule["revision-id-mismatch"]["revision"] == "f1f1f1f1f104" and "ba9876543210" in by_rule["revision-id-mismatch"]["message"]
    assert len(findings(proc)) == 4


def test_squawk_catches_each_unsafe_ddl(tmp_path):
    proc = lint(example("lint_unsafe_sql", tmp_path), "--all")
    assert proc.returncode == 1, proc.stderr
    found = rules(proc)
    for rule, revision in [
        ("adding-required-field", "9a9a9a9a9a01"),
        ("require-concurrent-index-creation", "9a9a9a9a9a02"),
        ("changing-column-type", "9a9a9a9a9a03"),
        ("constraint-missing-not-valid", "9a9a9a9a9a04"),
        ("ban-drop-column", "9a9a9a9a9a05"),
        ("renaming-column", "9a9a9a9a9a06"),
    ]:
        assert (rule, revision) in found, (rule, revision, found)
    by_revision = {f["revision"]: f for f in findings(proc) if f["rule"] == "adding-required-field"}
    assert "ALTER TABLE users ADD COLUMN age INTEGER NOT NULL" in by_revision["9a9a9a9a9a01"]["message"]
    assert by_revision["9a9a9a9a9a01"]["line"] == 18  # the op.add_column line


def test_squawk_judges_for_the_configured_postgres_version(tmp_path):
    project = example("lint_safe_sql", tmp_path)
    assert lint(project, "--all").returncode == 0  # PostgreSQL 16 (default): a constant default is cheap
    (project / "pyproject.toml").write_text('[tool.dbtasks]\nlint_pg_version = "10"\n')
    proc = lint(project, "--all")
    # before PostgreSQL 11 adding a column with a default rewrites the table
    assert ("adding-field-with-default", "9c9c9c9c9c01") in rules(proc), proc.stdout
    assert lint(project, "--all", DBTASKS_LINT_PG_VERSION="16").returncode == 0  # the variable wins


def test_suppression_needs_a_reason(tmp_path):
    project = example("lint_unsafe_sql", tmp_path)
    path = next((project / "migrations" / "versions").glob("*9a9a9a9a9a01*"))
    path.write_text(path.read_text().replace("def upgrade():\n", "def upgrade():\n    # dbtasks: allow adding-required-field\n"))
    found = rules(lint(project, "--all"))
    assert ("suppression-without-reason", "9a9a9a9a9a01") in found and ("adding-required-field", "9a9a9a9a9a01") in found
    path.write_text(path.read_text().replace("# dbtasks: allow adding-required-field\n", "# dbtasks: allow adding-required-field: the table is empty in every environment\n"))
    found = rules(lint(project, "--all"))
    assert not {r for r in found if r[1] == "9a9a9a9a9a01"}


def test_since_lints_only_new_revisions(tmp_path):
    project = example("lint_unsafe_sql", tmp_path)
    git_history(project, new=("9a9a9a9a9a06",))
    proc = lint(project)  # default origin/main does not exist here: falls back to main
    assert proc.returncode == 1
    assert {r[1] for r in rules(proc)} == {"9a9a9a9a9a06"}
    text = run(["lint"], project, **NO_SERVER)  # the notes go to stderr with text output
    assert text.returncode == 1 and "[9a9a9a9a9a06]" in text.stdout, text.stdout
    assert text.stderr.splitlines() == [
        "note: lint: git base 'origin/main' does not exist: using 'main'",
        "note: lint: linted 1 revision(s): revisions added or changed since main",
    ]
    new = next((project / "migrations" / "versions").glob("*9a9a9a9a9a06*"))
    new_text = new.read_text()
    git(project, "checkout", "-q", "main")
    proc = lint(project, "--since", "main")
    assert proc.returncode == 0 and findings(proc) == []
    # an uncommitted new revision is in scope too
    new.write_text(new_text)
    proc = lint(project, "--since", "main")
    assert proc.returncode == 1 and {r[1] for r in rules(proc)} == {"9a9a9a9a9a06"}
    new.unlink()
    proc = lint(project, "--all")
    assert len({r[1] for r in rules(proc)}) == 5  # 01..05 on main
    proc = run(["lint", "--since", "no-such-branch"], project, **NO_SERVER)
    assert_one_line_error(proc, "git base 'no-such-branch' does not exist", "--all")


def test_made_with_make_and_just(tmp_path):
    from .conftest import JUST, REPO, clean_env, recipe_program
    import subprocess

    project = example("lint_app_import", tmp_path)
    program = recipe_program()
    for cmd, code in (
        (["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "db-lint-migrations", f"DBTASKS={program}", "ALL=1", "FORMAT=json"], 2),
        ([JUST, "--justfile", str(REPO / "justfile"), "--working-directory", str(project), f"dbtasks={program}", "ALL=1", "FORMAT=json", "db-lint-migrations"], 1),
    ):
        proc = subprocess.run(cmd, cwd=project, env=clean_env(**NO_SERVER), capture_output=True, text=True)
        assert proc.returncode == code, (cmd, proc.stdout, proc.stderr)  # make says 2 for any failed recipe
        out = proc.stdout[proc.stdout.find("["):]  # make echoes the command line first
        assert [(f["rule"], f["revision"]) for f in json.loads(out)] == [("self-contained", "e1e1e1e1e101")], (cmd, proc.stdout, proc.stderr)


def _add_revision(project, rev: str, body: str, docstring_revises: str, down: str = '"b1b1b1b1b101"') -> None:
    (project / "migrations" / "versions" / f"2026_01_03_{rev}_extra.py").write_text(
        f'"""extra\n\nRevision ID: {rev}\nRevises: {docstring_revises}\nCreate Date: 2026-01-03 10:00:00\n\n"""\n'
        f"import sqlalchemy as sa\nfrom alembic import op\n{body}\n\n"
        f'revision = "{rev}"\ndown_revision = {down}\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade():\n    op.add_column(\"users\", sa.Column(\"extra\", sa.Text()))\n\n\n"
        "def downgrade():\n    op.drop_column(\"users\", \"extra\")\n"
    )


def test_a_library_import_is_a_warning_and_the_projects_own_package_an_error(tmp_path):
    project = example("clean", tmp_path)
    _add_revision(project, "f1f1f1f1f101", "import yaml  # noqa: F401", "b1b1b1b1b101")
    proc = lint(project, "--all")
    assert proc.returncode == 0, proc.stdout
    assert rules(proc) == {("third-party-import", "f1f1f1f1f101")}
    assert findings(proc)[0]["severity"] == "warning"
    _add_revision(project, "f1f1f1f1f101", 'import importlib\nUser = importlib.import_module("models").User', "b1b1b1b1b101")
    proc = lint(project, "--all")
    assert proc.returncode == 1
    assert rules(proc) == {("self-contained", "f1f1f1f1f101")}


@pytest.mark.parametrize("revises", ["b1b1b1b1b101", "('b1b1b1b1b101',)", "b1b1b1b1b101,"])
def test_the_docstring_may_spell_the_same_parents_any_way(tmp_path, revises):
    project = example("clean", tmp_path)
    _add_revision(project, "f2f2f2f2f201", "", revises)
    assert findings(lint(project, "--all")) == []
    _add_revision(project, "f2f2f2f2f201", "", "a0a0a0a0a001")
    assert rules(lint(project, "--all")) == {("down-revision-mismatch", "f2f2f2f2f201")}


def _stock_project(tmp_path):
    """A project made with a stock `alembic init alembic`: its offline SQL is ONE transaction around every revision."""
    import subprocess

    from .conftest import BIN

    project = tmp_path / "shop"
    project.mkdir()
    subprocess.run([str(BIN / "alembic"), "init", "alembic"], cwd=project, check=True, capture_output=True)
    assert "transaction_per_migration" not in (project / "alembic" / "env.py").read_text()
    return project


def _write_revision(project, rev: str, down: str | None, upgrade: str) -> int:
    """A revision file under alembic/versions; the line of its first op call."""
    head = (
        f'"""{rev}\n\nRevision ID: {rev}\nRevises: {down or ""}\nCreate Date: 2026-01-01 10:00:00\n\n"""\n'
        "import sqlalchemy as sa\nfrom alembic import op\n\n"
        f'revision = "{rev}"\ndown_revision = {down and repr(down)}\nbranch_labels = None\ndepends_on = None\n\n\n'
        "def upgrade():\n"
    )
    (project / "alembic" / "versions" / f"{rev}_x.py").write_text(head + upgrade + '\n\ndef downgrade():\n    raise NotImplementedError("test")\n')
    return head.count("\n") + 1


INITIAL = """\
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_orders_status_created", "orders", ["status", "created_at"])
    op.create_index("ix_orders_user_id", "orders", ["user_id"])
    op.create_index(op.f("ix_users_email"), "users", ["email"], unique=True)
"""


def test_a_single_transaction_env_lints_each_revision_as_the_transaction_it_runs_in(tmp_path):
    project = _stock_project(tmp_path)
    _write_revision(project, "d1d8fc7765cd", None, INITIAL)
    assert findings(lint(project, "--all")) == []
    # A second revision (the first unchanged) leaves the first one's chunk without its BEGIN and COMMIT.
    _write_revision(project, "e2e2e2e2e202", "d1d8fc7765cd", (
        '    op.add_column("orders", sa.Column("note", sa.Text()))\n'
        '    op.create_table("payments", sa.Column("id", sa.BigInteger(), primary_key=True), sa.Column("order_id", sa.BigInteger()))\n'
        '    op.create_index("ix_payments_order_id", "payments", ["order_id"])\n'
    ))
    proc = lint(project, "--all")
    assert proc.returncode == 0 and findings(proc) == [], proc.stdout
    # An index on a table an earlier revision made is still flagged, in the middle of the history too.
    first = _write_revision(project, "f3f3f3f3f303", "e2e2e2e2e202", (
        '    op.create_index("ix_orders_created", "orders", ["created_at"])\n'
        '    op.create_index("ix_users_id_email", "users", ["id", "email"])\n'
    ))
    _write_revision(project, "a4a4a4a4a404", "f3f3f3f3f303", '    op.add_column("users", sa.Column("name", sa.Text()))\n')
    proc = lint(project, "--all")
    assert proc.returncode == 1, proc.stdout
    assert rules(proc) == {("require-concurrent-index-creation", "f3f3f3f3f303")}, proc.stdout
    # each finding points at its own op call
    lines = {f["message"].split("SQL: ")[1]: f["line"] for f in findings(proc)}
    assert lines == {
        "CREATE INDEX ix_orders_created ON orders (created_at);": first,
        "CREATE INDEX ix_users_id_email ON users (id, email);": first + 1,
    }, proc.stdout


def test_two_index_ops_of_one_revision_point_at_their_own_lines(tmp_path):
    project = example("lint_unsafe_sql", tmp_path)
    path = next((project / "migrations" / "versions").glob("*9a9a9a9a9a02*"))
    text = path.read_text()
    path.write_text(text.replace(
        '    op.create_index("ix_posts_title", "posts", ["title"])\n',
        '    op.execute("CREATE INDEX ix_posts_user ON posts (user_id)")\n'
        '    op.create_index(\n        "ix_posts_score", "posts", ["score"],\n    )\n'
        '    op.create_index("ix_posts_title", "posts", ["title"])\n',
    ))
    proc = lint(project, "--all")
    found = {f["message"].split("SQL: ")[1]: f["line"] for f in findings(proc) if f["revision"] == "9a9a9a9a9a02"}
    assert found == {
        "CREATE INDEX ix_posts_user ON posts (user_id);": 18,
        "CREATE INDEX ix_posts_score ON posts (score);": 19,
        "CREATE INDEX ix_posts_title ON posts (title);": 22,
    }, proc.stdout
