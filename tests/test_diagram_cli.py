"""regenerate-db-diagram and check-db-docs end to end: CLI, make and just, real PostgreSQL."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtasks.database import connect

from .conftest import BIN, REPO, assert_one_line_error, run, run_just, run_make, url_str


def docs(project: Path) -> Path:
    return project / "docs" / "database"


def snapshot(project: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(docs(project).iterdir())}


def head_of(project: Path, env) -> str:
    proc = run(["heads"], project, **env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


def add_labels_revision(project: Path, env) -> None:
    """A hand-written revision: a table with a nullable, unique foreign key."""
    down = head_of(project, env)
    (project / "alembic" / "versions" / "2099_01_01_0000labels01_add_labels.py").write_text(textwrap.dedent(f'''
        """add labels

        Revision ID: 0000labels01
        Revises: {down}
        """

        import sqlalchemy as sa
        from alembic import op

        revision = "0000labels01"
        down_revision = "{down}"
        branch_labels = None
        depends_on = None


        def upgrade() -> None:
            op.create_table(
                "labels",
                sa.Column("id", sa.BigInteger(), primary_key=True),
                sa.Column("project_id", sa.BigInteger(), sa.ForeignKey("projects.id"), nullable=True, unique=True),
            )


        def downgrade() -> None:
            op.drop_table("labels")
    '''))


@pytest.mark.slow
def test_regenerate_is_idempotent_and_check_catches_stale_files(project, db_env):
    proc = run(["regenerate-db-diagram"], project, **db_env)
    assert proc.returncode == 0, proc.stderr
    assert "drew 6 tables and 7 relationships from the migrations at head" in proc.stdout
    first = snapshot(project)
    assert {"diagram.mmd", "schema.sql"} <= set(first)
    assert first["diagram.mmd"] == (REPO / "docs/database/diagram.mmd").read_bytes()  # the committed one
    assert first["schema.sql"] == (REPO / "docs/database/schema.sql").read_bytes()

    again = run(["regenerate-db-diagram"], project, **db_env)
    assert again.returncode == 0, again.stderr
    assert snapshot(project) == first  # identical bytes
    assert "written" not in again.stdout and again.stdout.count("unchanged") == len(first)

    ok = run(["check-db-docs"], project, **db_env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "docs: ok" in ok.stdout and "docs are up to date" in ok.stderr

    # a hand edit makes the diagram stale: exit 1 with a unified diff and the fix
    mmd = docs(project) / "diagram.mmd"
    mmd.write_text(mmd.read_text().replace('        text description\n', ''))
    stale = run(["check-db-docs"], project, **db_env)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "docs/database/diagram.mmd is stale" in stale.stdout
    assert "--- docs/database/diagram.mmd (checked in)" in stale.stdout
    assert "+++ docs/database/diagram.mmd (regenerated)" in stale.stdout
    assert "+        text description" in stale.stdout
    assert "run `dbtasks regenerate-db-diagram`" in stale.stdout
    assert "schema.sql" not in stale.stdout  # only what differs is reported
    mmd.write_bytes(first["diagram.mmd"])

    # a new migration makes both files stale
    add_labels_revision(project, db_env)
    stale = run(["check-db-docs"], project, **db_env)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "+    labels {" in stale.stdout
    assert '+    projects |o..o| labels : "project_id"' in stale.stdout
    assert "+CREATE TABLE public.labels (" in stale.stdout
    regen = run(["regenerate-db-diagram"], project, **db_env)
    assert regen.returncode == 0 and "drew 7 tables and 8 relationships" in regen.stdout, regen.stderr
    assert run(["check-db-docs"], project, **db_env).returncode == 0

    # a missing file is a finding too
    (docs(project) / "schema.sql").unlink()
    missing = run(["check-db-docs"], project, **db_env)
    assert missing.returncode == 1 and "docs/database/schema.sql is missing" in missing.stdout


def test_bad_input_is_one_line_and_changes_nothing(project, db_env, tmp_path):
    proc = run(["regenerate-db-diagram", "--schema", "nope"], project, **db_env)
    assert_one_line_error(proc, "schema 'nope' does not exist", "the schemas are: public")
    assert not docs(project).exists()

    (project / "afile").write_text("x")
    proc = run(["regenerate-db-diagram", "--output-dir", "afile"], project, **db_env)
    assert_one_line_error(proc, "is a file", "--output-dir")

    proc = run(["regenerate-db-diagram"], project, DATABASE_URL="postgresql://someone:Hunter2secret@127.0.0.1:1/app")
    line = assert_one_line_error(proc, "cannot connect")
    assert "Hunter2secret" not in proc.stdout + proc.stderr and "Hunter2secret" not in line

    # A protected target's server never gets the scratch database (issue 10): TEST_DATABASE_URL on that same server is refused.
    proc = run(["--env", "prod", "regenerate-db-diagram"], project, PROD_DATABASE_URL=db_env["DATABASE_URL"], TEST_DATABASE_URL=db_env["DATABASE_URL"])
    assert_one_line_error(proc, "protected environment", "TEST_DATABASE_URL")
    assert not docs(project).exists()

    with (project / "pyproject.toml").open("a") as fh:
        fh.write('\n[tool.dbtasks.diagram]\ncolour = "red"\n')
    proc = run(["check-db-docs"], project, **db_env)
    assert_one_line_error(proc, "unknown key 'colour' in [tool.dbtasks.diagram]", "known keys: alembic_version")


def test_from_database_draws_an_existing_database(project, dbtasks_database):
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    out = project / "prod-docs"
    proc = run(["regenerate-db-diagram", "--from-database", "--output-dir", str(out), "--no-svg"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert f"from {dbtasks_database.database}" in proc.stdout
    # a database migrated to head draws what the migrations draw
    assert (out / "diagram.mmd").read_bytes() == (REPO / "docs/database/diagram.mmd").read_bytes()
    assert (out / "schema.sql").read_bytes() == (REPO / "docs/database/schema.sql").read_bytes()
    assert not (out / "diagram.svg").exists()

    # is that database what the docs say? Not after someone changed it by hand.
    shutil.copytree(REPO / "docs" / "database", docs(project))
    assert run(["check-db-docs", "--from-database"], project, **env).returncode == 0
    with connect(dbtasks_database) as conn:
        conn.execute(sa.text("alter table tags add column color text"))
        conn.commit()
    proc = run(["check-db-docs", "--from-database"], project, **env)
    assert proc.returncode == 1 and "+        text color" in proc.stdout, proc.stdout + proc.stderr


NO_DOT = "diagram.svg not compared: Graphviz `dot` is not installed (apt install graphviz)"


@pytest.mark.slow
def test_svg_is_compared_only_where_dot_is_installed(project, db_env):
    """Without dot, diagram.svg is left out of the verdict with one note; with dot, its digest decides."""
    # PATH without /usr/bin: no dot (pg_dump is still found in its PostgreSQL directory)
    proc = run(["regenerate-db-diagram"], project, PATH=str(BIN), **db_env)
    assert proc.returncode == 0, proc.stderr
    assert "diagram.svg not rendered: Graphviz `dot` is not installed" in proc.stderr
    assert "apt-get install graphviz" in proc.stderr
    assert not (docs(project) / "diagram.svg").exists()

    committed_svg = (REPO / "docs/database/diagram.svg").read_text()
    before, marker, after = committed_svg.partition("dbtasks-dot-sha256: ")
    stale_svg = before + marker + "0" * 64 + after[64:]  # drawn from another schema
    (docs(project) / "diagram.svg").write_text(stale_svg)
    proc = run(["check-db-docs"], project, PATH=str(BIN), **db_env)
    assert proc.returncode == 0 and "docs: ok" in proc.stdout, proc.stdout + proc.stderr  # nobody here can redraw it
    assert proc.stderr.count(NO_DOT) == 1, proc.stderr
    proc = run(["regenerate-db-diagram"], project, PATH=str(BIN), **db_env)
    assert proc.returncode == 0 and "stale     docs/database/diagram.svg" in proc.stdout, proc.stdout + proc.stderr
    assert "fails on it where Graphviz `dot` is installed" in proc.stderr
    assert (docs(project) / "diagram.svg").read_text() == stale_svg  # kept, never half-fixed

    if shutil.which("dot") is None:
        pytest.skip("Graphviz dot is not installed (apt-get install graphviz)")
    # With dot the same SVG fails the check, ...
    proc = run(["check-db-docs"], project, **db_env)
    assert proc.returncode == 1 and "docs/database/diagram.svg is stale" in proc.stdout, proc.stdout + proc.stderr
    assert "run `dbtasks regenerate-db-diagram`" in proc.stdout and NO_DOT not in proc.stderr
    # ... while a current one passes whatever Graphviz drew it: the digest of its DOT source decides, not its layout.
    other_layout = re.sub(r'points="[^"]*"', 'points="0,0 1,1"', committed_svg)
    assert other_layout != committed_svg
    (docs(project) / "diagram.svg").write_text(other_layout)
    proc = run(["check-db-docs"], project, **db_env)
    assert proc.returncode == 0 and "docs: ok" in proc.stdout, proc.stdout + proc.stderr

    (docs(project) / "diagram.svg").write_text(stale_svg)
    proc = run(["regenerate-db-diagram"], project, **db_env)
    assert proc.returncode == 0 and "written   docs/database/diagram.svg" in proc.stdout, proc.stdout + proc.stderr
    assert "dbtasks-dot-sha256: " + "0" * 64 not in (docs(project) / "diagram.svg").read_text()
    assert run(["check-db-docs"], project, **db_env).returncode == 0


README_TEXT = """# Our app

Intro with the markers mentioned inline: `<!-- dbtasks:diagram:begin -->`.

## Schema

<!-- dbtasks:diagram:begin -->
```mermaid
erDiagram
    old {
    }
```
<!-- dbtasks:diagram:end -->

## After
Untouched text.
"""


@pytest.mark.slow
def test_readme_block_is_refreshed_and_checked(project, db_env):
    readme = project / "README.md"
    readme.write_text("# No markers\n\n```mermaid\nerDiagram\n```\n")
    unmarked = readme.read_bytes()
    proc = run(["regenerate-db-diagram", "--no-svg"], project, **db_env)
    assert proc.returncode == 0, proc.stderr
    assert readme.read_bytes() == unmarked and "README.md" not in proc.stdout  # no markers, no change

    readme.write_text(README_TEXT)
    proc = run(["regenerate-db-diagram", "--no-svg"], project, **db_env)
    assert proc.returncode == 0 and "written   README.md" in proc.stdout, proc.stdout + proc.stderr
    mmd = (docs(project) / "diagram.mmd").read_text()
    head, _, rest = README_TEXT.partition("```mermaid\n")
    tail = rest.partition("```\n")[2]
    assert readme.read_text() == head + "```mermaid\n" + mmd + "```\n" + tail  # only the lines between the markers changed

    again = run(["regenerate-db-diagram", "--no-svg"], project, **db_env)
    assert again.returncode == 0 and "unchanged README.md" in again.stdout, again.stdout + again.stderr
    ok = run(["check-db-docs"], project, **db_env)
    assert ok.returncode == 0 and "docs: ok" in ok.stdout, ok.stdout + ok.stderr

    # a hand edit inside the block is reported with its diff and the fix
    readme.write_text(readme.read_text().replace("        text description\n", ""))
    stale = run(["check-db-docs"], project, **db_env)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "README.md: the diagram between the <!-- dbtasks:diagram:begin --> markers (line 7) is stale" in stale.stdout
    assert "+        text description" in stale.stdout and "run `dbtasks regenerate-db-diagram`" in stale.stdout
    assert "diagram.mmd is stale" not in stale.stdout

    # a one-off --output-dir (e.g. production's schema) leaves the project's README alone
    edited = readme.read_bytes()
    proc = run(["regenerate-db-diagram", "--no-svg", "--output-dir", "elsewhere"], project, **db_env)
    assert proc.returncode == 0 and "README.md left alone" in proc.stderr, proc.stdout + proc.stderr
    assert readme.read_bytes() == edited
    proc = run_make("regenerate-db-diagram", project, **db_env)
    assert proc.returncode == 0 and "written   README.md" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_make_and_just_recipes(project, db_env):
    proc = run_make("regenerate-db-diagram", project, **db_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (docs(project) / "diagram.mmd").is_file()
    proc = run_just(["check-db-docs"], project, **db_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_make("check-db-docs", project, **db_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # FROM_DATABASE reaches dbtasks from make and from just (the database itself is empty)
    out = run_make("regenerate-db-diagram", project, "FROM_DATABASE=1", **db_env)
    assert out.returncode == 0 and "drew 0 tables" in out.stdout, out.stdout + out.stderr
    proc = run_just(["FROM_DATABASE=1", "check-db-docs"], project, **db_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = run_just(["regenerate-db-diagram"], project, **db_env)
    assert proc.returncode == 0 and "drew 6 tables" in proc.stdout, proc.stdout + proc.stderr
