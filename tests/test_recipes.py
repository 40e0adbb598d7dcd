"""The Makefile and the justfile: same recipes, same meaning, each one working
end to end against a real PostgreSQL; every CLI verb documented."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from dbtasks.cli import cli
from dbtasks.config import load_settings
from dbtasks.testing import free_port

from .conftest import DBTASKS, JUST, REPO, clean_env, local_env, run_just, run_make, scalar, tables, url_str
from .test_migrations import APP_TABLES, add_model, revision_files

SETUP_ONLY = {"help", "install", "test", "dist"}  # no dbtasks verb behind them


def make_recipes() -> dict[str, str]:
    text = (REPO / "Makefile").read_text() + (REPO / "dbtasks/share/dbtasks.mk").read_text()
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


def docs_text() -> str:
    """README.md and the pages under docs/, where the recipes, verbs and settings are documented."""
    return "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])


def test_every_cli_command_has_help_and_is_in_the_docs():
    docs = docs_text()
    for name, command in ((n, cli.get_command(None, n)) for n in cli.list_commands(None)):
        assert command.help and command.help.strip(), name
        assert f"dbtasks {name}" in docs, f"`dbtasks {name}` is not documented in README.md or docs/"


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = readme.split("```", 2)[1]
    assert "make init" in first_block and "make test" in first_block


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


# -- end to end -----------------------------------------------------------------
# Every recipe runs through make against a real PostgreSQL. The recipes that
# manage the server run against a local cluster of their own; the others each
# get a fresh database on the test server, so pytest-xdist can run them side by side.


class Make:
    """``make <target>`` in a project copy with fixed settings; asserts success unless ``ok=False``."""

    def __init__(self, project: Path, env: dict[str, str]) -> None:
        self.project, self.env = project, env

    def __call__(self, target: str, *args: str, input: str | None = None, ok: bool = True, **extra: str) -> subprocess.CompletedProcess:
        proc = run_make(target, self.project, *args, input=input, **{**self.env, **extra})
        if ok:
            assert proc.returncode == 0, (target, proc.stdout, proc.stderr)
        return proc


@pytest.mark.slow
def test_make_server_recipes_on_a_local_server(project, reachable_dir):
    """init, start-db, db-status, db-seed, db-shell, db-migrate-down-all, init-db, volume-recreate, stop-db."""
    env = local_env(reachable_dir, free_port())
    settings = load_settings(project_dir=project, environ=env)
    url = settings.url
    make = Make(project, env)
    try:
        out = make("init").stdout
        assert "initialized and started" in out and "created database app" in out
        assert "seeded:" in out and "pending:  none" in out
        assert APP_TABLES <= tables(url)
        assert scalar(url, "select current_database()") == "app"
        assert scalar(url, "show listen_addresses") == "127.0.0.1"
        if os.geteuid() == 0:  # PostgreSQL refuses root: the server runs as another user
            pid = int((reachable_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
            owner = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
            assert owner == settings.server_user != "root"
        assert "already running" in make("start-db").stdout
        assert "pending:  none" in make("db-status").stdout
        assert "demo data already present" in make("db-seed").stdout
        shell = make("db-shell", input="select 'hello-' || count(*) from users;\n")
        assert "hello-60" in shell.stdout

        make("db-migrate-down-all")
        assert not (APP_TABLES & tables(url))
        make("init-db")
        assert APP_TABLES <= tables(url)
        make("db-seed")
        assert scalar(url, "select count(*) from users") == 60
        make("volume-recreate")
        assert scalar(url, "select count(*) from users") == 0
        assert scalar(url, "select count(*) from alembic_version") == 1

        # A postmaster.pid left behind (kill -9, a reboot) whose pid now belongs to
        # another process: PostgreSQL refuses to start while it names a live pid.
        pid_file = reachable_dir / "pgdata" / "postmaster.pid"
        real = pid_file.read_text().splitlines()
        for impostor in (1, os.getpid()):
            make("stop-db")
            pid_file.write_text("\n".join([str(impostor), *real[1:]]) + "\n")
            assert "not running" in make("stop-db").stdout
            status = make("db-status", ok=False)
            assert "run `make start-db`" in status.stderr, status.stderr  # ... which now works
            out = make("start-db").stdout
            assert "moved a stale postmaster.pid aside" in out and f"its pid {impostor} is not" in out, out
            assert len(out.strip().splitlines()) == 1
            assert "pending:  none" in make("db-status").stdout
    finally:
        stop = make("stop-db", ok=False)
    assert stop.returncode == 0 and "stopped" in stop.stdout, (stop.stdout, stop.stderr)
    assert "not running" in make("stop-db").stdout


@pytest.fixture
def make_db(project, db_env, empty_database) -> tuple[Make, URL]:
    """make in a project copy whose database is a fresh empty one (``db_env``)."""
    return Make(project, dict(db_env)), empty_database


@pytest.fixture
def make_migrated(project, dbtasks_database) -> tuple[Make, URL]:
    """make in a project copy whose database is a fresh one already at head."""
    return Make(project, {"DATABASE_URL": url_str(dbtasks_database)}), dbtasks_database


@pytest.mark.slow
def test_make_create_migrate_down_and_up(project, make_db):
    """db-migrate, db-migrate-create, db-status, db-migrate-current, db-migrate-history, db-migrate-down, upgrade-db."""
    make, url = make_db
    make("db-migrate")
    assert APP_TABLES <= tables(url)
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
    assert "labels" not in tables(url) and APP_TABLES <= tables(url)
    make("upgrade-db")
    assert "labels" in tables(url)


def branch_revision(rev: str, name: str, parent: str) -> str:
    return (
        f'"""{name}\n\nRevision ID: {rev}\nRevises: {parent}\n"""\n'
        f"revision = {rev!r}\ndown_revision = {parent!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
    )


@pytest.mark.slow
def test_make_empty_revision_heads_and_merge(project, make_migrated):
    """db-migrate-empty, db-migrate-heads, db-migrate-merge-heads."""
    make, url = make_migrated
    make("db-migrate-empty", "MIGRATE_MSG=hand written")
    assert any(p.name.endswith("_hand_written.py") for p in revision_files(project))
    make("db-migrate")
    head = make("db-migrate-heads").stdout.split()[0]
    parent = scalar(url, "select version_num from alembic_version")
    assert parent == head
    versions = project / "alembic" / "versions"
    (versions / "2026_01_01_bbbb00000002_side.py").write_text(branch_revision("bbbb00000002", "side", parent))
    (versions / "2026_01_01_cccc00000003_other.py").write_text(branch_revision("cccc00000003", "other", parent))
    assert len(make("db-migrate-heads").stdout.strip().splitlines()) == 2
    make("db-migrate-merge-heads")
    heads = make("db-migrate-heads").stdout.strip().splitlines()
    assert len(heads) == 1 and "merge heads" in heads[0], heads
    make("db-migrate")
    assert scalar(url, "select version_num from alembic_version") == heads[0].split()[0]
    # Right after the merge, db-migrate-down undoes the merge revision (both branches stay applied).
    down = make("db-migrate-down")
    assert heads[0].split()[0] in down.stdout, down.stdout
    assert scalar(url, "select string_agg(version_num, ',' order by version_num) from alembic_version") == "bbbb00000002,cccc00000003"


@pytest.mark.slow
def test_readme_hand_written_migration_workflow(project, make_migrated):
    """docs/workflows.md's "Hand-written migrations", copied literally: db-migrate-empty,
    fill in upgrade() and downgrade() (with op and sa, which the formatter keeps),
    db-migrate, db-migrate-down."""
    make, url = make_migrated
    page = (REPO / "docs" / "workflows.md").read_text()
    section = page.split("## Hand-written migrations", 1)[1].split("\n## ", 1)[0]
    command = re.search(r"^\$ (make db-migrate-empty .+)$", section, re.M).group(1)
    assert "`make db-migrate`" in section and "`make db-migrate-down`" in section
    words = shlex.split(command)
    assert words[:2] == ["make", "db-migrate-empty"]
    created = make(*words[1:]).stdout
    shown = re.search(r"^created (\w+): (\S+\.py)$", section, re.M)
    match = re.search(r"^created (\w+): (\S+\.py)$", created, re.M)
    assert shown and match, created
    assert re.sub(r"\d{4}_\d\d_\d\d_\w{12}_", "", match.group(2)) == re.sub(r"\d{4}_\d\d_\d\d_\w{12}_", "", shown.group(2))
    path = project / match.group(2)
    text = path.read_text()
    assert "from alembic import op" in text and "import sqlalchemy as sa" in text, text
    text = text.replace(
        "def upgrade() -> None:\n    pass",
        'def upgrade() -> None:\n    op.create_table("timezones", sa.Column("name", sa.Text(), primary_key=True))\n'
        '    op.execute("insert into timezones values (\'UTC\')")',
    ).replace("def downgrade() -> None:\n    pass", 'def downgrade() -> None:\n    op.drop_table("timezones")')
    assert text.count("timezones") >= 3, text
    path.write_text(text)
    make("db-migrate")
    assert scalar(url, "select string_agg(name, ',') from timezones") == "UTC"
    assert scalar(url, "select version_num from alembic_version") == match.group(1)
    make("db-migrate-down")
    assert "timezones" not in tables(url)
    assert scalar(url, "select version_num from alembic_version") != match.group(1)


@pytest.mark.slow
def test_make_create_aliases_migrate_db_and_revision(project, make_migrated):
    """migrate-db CHANGE=... and revision MIGRATE_MSG=..., each with a further model change."""
    make, url = make_migrated
    with (project / "app" / "models.py").open("a") as fh:
        fh.write('\n\nclass Note(Base):\n    __tablename__ = "notes"\n\n    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)\n')
    make("migrate-db", "CHANGE=add notes")
    assert any(p.name.endswith("_add_notes.py") for p in revision_files(project))
    make("db-migrate")
    with (project / "app" / "models.py").open("a") as fh:
        fh.write('\n\nclass Memo(Base):\n    __tablename__ = "memos"\n\n    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)\n')
    make("revision", "MIGRATE_MSG=add memos")
    assert any(p.name.endswith("_add_memos.py") for p in revision_files(project))
    make("db-migrate")
    assert {"notes", "memos"} <= tables(url)


def test_db_status_check_exit_status_for_ci(project, make_db):
    """db-status-check: make's exit status tells pending (non-zero) from up to date (0); just keeps 1."""
    make, url = make_db
    pending = make("db-status-check", ok=False)
    assert pending.returncode == 2 and "pending:  1 revision(s)" in pending.stdout, (pending.stdout, pending.stderr)
    assert run_just(["db-status-check"], project, **make.env).returncode == 1
    make("db-migrate")
    assert "up to date" in make("db-status-check").stdout
    assert run_just(["db-status-check"], project, **make.env).returncode == 0


def test_make_prod_upgrade_needs_confirmation(make_db):
    """upgrade-prod-db: refused without CONFIRM, done with it."""
    make, url = make_db
    prod = {"PROD_DATABASE_URL": url_str(url)}
    refused = make("upgrade-prod-db", ok=False, **prod)
    assert refused.returncode == 2 and "protected environment 'prod'" in refused.stderr, refused.stderr
    assert tables(url) == set()
    make("upgrade-prod-db", f"CONFIRM={url.database}", **prod)
    assert APP_TABLES <= tables(url)


def test_make_missing_message_is_one_line_exit_2(project, empty_database):
    proc = run_make("db-migrate-create", project, DATABASE_URL=url_str(empty_database))
    assert proc.returncode == 2
    assert "MIGRATE_MSG is empty" in proc.stderr and "Traceback" not in proc.stderr
    # the same through the installed program itself (the other make tests use a warm copy of it)
    real = subprocess.run(
        ["make", "-s", "--no-print-directory", "db-migrate-create", f"DBTASKS={DBTASKS}"],
        cwd=project, env=clean_env(DATABASE_URL=url_str(empty_database)), capture_output=True, text=True, timeout=300,
    )
    assert (real.returncode, real.stdout, real.stderr) == (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.slow
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

    docs = docs_text()
    for setting in SETTINGS:
        assert f"`{setting.variable}`" in docs, f"{setting.variable} is missing from README.md and docs/"
