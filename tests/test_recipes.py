"""The Makefile and the justfile: same recipes, same meaning, each one working
end to end against a real PostgreSQL; every CLI verb documented."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import textwrap
from pathlib import Path

import pytest

from dbtasks.cli import cli
from dbtasks.config import load_settings
from dbtasks.testing import free_port

from .conftest import DBTASKS, JUST, REPO, assert_one_line_error, clean_env, run_just, run_make, scalar, tables, url_str
from .test_migrations import APP_TABLES, add_model, revision_files
from .test_server import reachable_dir  # noqa: F401  (fixture)

SETUP_ONLY = {"help", "install", "test"}  # no dbtasks verb behind them


def make_recipes() -> dict[str, str]:
    text = (REPO / "Makefile").read_text()
    return dict(re.findall(r"^([a-zA-Z0-9_-]+):[^\n#]*## (.+)$", text, re.M))


def just_recipes() -> list[str]:
    out = subprocess.run([JUST, "--summary", "--justfile", str(REPO / "justfile")], capture_output=True, text=True, check=True).stdout
    return out.split()


def dbtasks_call(lines: str) -> list[str]:
    """The dbtasks arguments a dry run would execute, with env assignments dropped."""
    calls = []
    for line in lines.splitlines():
        if DBTASKS not in line:
            continue
        words = shlex.split(line)
        words = words[words.index(DBTASKS) + 1:]
        calls.append(words)
    return calls


def test_makefile_and_justfile_offer_the_same_recipes():
    assert set(make_recipes()) == set(just_recipes())


@pytest.mark.parametrize("recipe", sorted(set(make_recipes()) - SETUP_ONLY))
def test_make_and_just_recipes_call_the_same_verb(recipe):
    env = clean_env()
    make_n = subprocess.run(["make", "-n", "--no-print-directory", recipe, f"DBTASKS={DBTASKS}"], cwd=REPO, env=env, capture_output=True, text=True)
    just_n = subprocess.run([JUST, "-n", f"dbtasks={DBTASKS}", recipe], cwd=REPO, env=env, capture_output=True, text=True)
    assert make_n.returncode == 0, make_n.stderr
    assert just_n.returncode == 0, just_n.stderr
    make_calls, just_calls = dbtasks_call(make_n.stdout), dbtasks_call(just_n.stderr)
    assert len(make_calls) == 1, make_n.stdout  # one line, one verb
    assert make_calls == just_calls


def test_help_lists_every_recipe_with_a_description():
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True, env=clean_env()).stdout
    for recipe, description in make_recipes().items():
        assert recipe in out and description.strip() in out
    dump = subprocess.run([JUST, "--dump", "--dump-format", "json", "--justfile", str(REPO / "justfile")], capture_output=True, text=True, check=True).stdout
    docs = {name: r.get("doc") for name, r in json.loads(dump)["recipes"].items()}
    for recipe in just_recipes():
        assert docs[recipe], f"just recipe {recipe} has no description"
    # make with no target prints the help
    default = subprocess.run(["make", "--no-print-directory"], cwd=REPO, capture_output=True, text=True, env=clean_env()).stdout
    assert default == out


def test_every_cli_command_has_help_and_is_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, command in cli.commands.items():
        assert command.help and command.help.strip(), name
        assert f"dbtasks {name}" in readme, f"`dbtasks {name}` is not documented in README.md"


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert "make init" in first_block and "make test" in first_block


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


# -- end to end -----------------------------------------------------------------


def test_make_recipes_end_to_end_on_a_local_server(project, reachable_dir):  # noqa: F811
    env = {"DB_SERVER": "local", "DBTASKS_PG_DATA": str(reachable_dir / "pgdata"), "DBTASKS_PG_PORT": str(free_port())}
    url = load_settings(project_dir=project, environ=env).url

    def make(target, *args, input=None, ok=True, **extra):
        proc = run_make(target, project, *args, input=input, **env, **extra)
        if ok:
            assert proc.returncode == 0, (target, proc.stdout, proc.stderr)
        return proc

    try:
        out = make("init").stdout
        assert "seeded:" in out and "pending:  none" in out
        assert APP_TABLES <= tables(url)
        assert "already running" in make("start-db").stdout
        assert "pending:  none" in make("db-status").stdout
        assert "demo data already present" in make("db-seed").stdout
        shell = make("db-shell", input="select 'hello-' || count(*) from users;\n")
        assert "hello-60" in shell.stdout

        add_model(project)
        make("db-migrate-create", 'MIGRATE_MSG=add labels; $(touch pwned) `touch pwned2` "q"')
        assert not list(project.glob("pwned*"))
        assert "1 revision(s)" in make("db-status").stdout
        make("db-migrate")
        assert "labels" in tables(url)
        assert "(head)" in make("db-migrate-current").stdout
        history = make("db-migrate-history").stdout
        assert "add labels" in history and "initial schema" in history
        make("db-migrate-down", "STEPS=1")
        assert "labels" not in tables(url)
        make("upgrade-db")
        assert "labels" in tables(url)

        make("db-migrate-empty", "MIGRATE_MSG=hand written")
        make("db-migrate")
        head = make("db-migrate-heads").stdout.split()[0]
        versions = project / "alembic" / "versions"
        parent = scalar(url, "select version_num from alembic_version")
        assert parent == head
        (versions / "2026_01_01_bbbb00000002_side.py").write_text(
            f'"""side\n\nRevision ID: bbbb00000002\nRevises: {parent}\n"""\n'
            f"revision = 'bbbb00000002'\ndown_revision = {parent!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
        (versions / "2026_01_01_cccc00000003_other.py").write_text(
            f'"""other\n\nRevision ID: cccc00000003\nRevises: {parent}\n"""\n'
            f"revision = 'cccc00000003'\ndown_revision = {parent!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
        assert len(make("db-migrate-heads").stdout.strip().splitlines()) == 2
        make("db-migrate-merge-heads")
        assert len(make("db-migrate-heads").stdout.strip().splitlines()) == 1
        make("db-migrate")

        # aliases of db-migrate-create, with a further model change each
        with (project / "app" / "models.py").open("a") as fh:
            fh.write('\n\nclass Note(Base):\n    __tablename__ = "notes"\n\n    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)\n')
        make("migrate-db", "CHANGE=add notes")
        assert any(p.name.endswith("_add_notes.py") for p in revision_files(project))
        make("db-migrate")
        with (project / "app" / "models.py").open("a") as fh:
            fh.write('\n\nclass Memo(Base):\n    __tablename__ = "memos"\n\n    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)\n')
        make("revision", "MIGRATE_MSG=add memos")
        make("db-migrate")
        assert {"notes", "memos"} <= tables(url)

        # prod: confirmation required, then given
        prod = {"PROD_DATABASE_URL": url_str(url)}
        refused = make("upgrade-prod-db", ok=False, **prod)
        assert refused.returncode == 2 and "protected environment 'prod'" in refused.stderr
        make("upgrade-prod-db", f"CONFIRM={url.database}", **prod)

        make("db-migrate-down-all")
        assert not (APP_TABLES & tables(url))
        make("init-db")
        make("db-seed")
        assert scalar(url, "select count(*) from users") == 60
        make("volume-recreate")
        assert scalar(url, "select count(*) from users") == 0
    finally:
        make("stop-db", ok=False)
    assert "not running" in make("stop-db").stdout


def test_make_missing_message_is_one_line_exit_2(project, empty_database):
    proc = run_make("db-migrate-create", project, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 2
    assert "MIGRATE_MSG is empty" in proc.stderr and "Traceback" not in proc.stderr


def test_just_recipes_end_to_end(project, empty_database):
    env = {"DATABASE_URL": url_str(empty_database)}

    def just(*args, ok=True, **extra):
        proc = run_just(list(args), project, **env, **extra)
        if ok:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    just("init")
    assert APP_TABLES <= tables(empty_database)
    add_model(project)
    just("db-migrate-create", "add labels; $(touch pwned) `touch pwned2`")
    assert not list(project.glob("pwned*"))
    assert any(p.name.endswith("_add_labels_touch_pwned_touch_pwned2.py") for p in revision_files(project))
    just("db-migrate")
    assert "labels" in tables(empty_database)
    just("db-migrate-down", "1")
    assert "labels" not in tables(empty_database)
    assert "1 revision(s)" in just("db-status").stdout
    missing = just("revision", ok=False)
    assert missing.returncode == 2 and "MIGRATE_MSG is empty" in missing.stderr
    refused = just("ENV=prod", "db-migrate-down-all", ok=False, PROD_DATABASE_URL=url_str(empty_database))
    assert refused.returncode == 2 and "protected environment" in refused.stderr
    assert APP_TABLES <= tables(empty_database)


def test_every_setting_is_documented():
    from dbtasks.config import SETTINGS

    readme = (REPO / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`{setting.variable}`" in readme, f"{setting.variable} is missing from README.md"
