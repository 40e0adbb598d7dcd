"""Any env.py, unchanged, and only ever the scratch database (dbtasks/envpy.py).

tests/examples/envpy/ is a project laid out as `alembic init` leaves it
(relative script_location, no prepend_sys_path); each of variants/*.py becomes
its migrations/env.py. Every variant is checked from another directory with
`dbtasks -c <path>/alembic.ini check` while DATABASE_URL (and the variables an
env.py of its own reads) name a "real" database holding rows: every variant
gets the cookbook variant's verdicts on a clean and on a broken history, and
the real database is unchanged afterwards (catalog, row counts,
alembic_version).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtasks.checks import snapshot
from dbtasks.database import connect, create_database, drop_database, scratch_name
from dbtasks.testing import free_port

from .checks_helpers import EXAMPLES
from .conftest import REPO, assert_one_line_error, run, run_make, url_str

CORPUS = EXAMPLES / "envpy"
VARIANTS = ("cookbook", "connect_pattern", "database_url", "own_variables", "hard_coded", "async_engine")


def corpus(tmp_path: Path, variant: str, broken: bool = False, **fill: str) -> Path:
    project = tmp_path / f"{variant}{'-broken' if broken else ''}" / "proj"
    shutil.copytree(CORPUS, project, ignore=shutil.ignore_patterns("variants", "broken", "__pycache__"))
    text = (CORPUS / "variants" / f"{variant}.py").read_text()
    for placeholder, value in fill.items():
        text = text.replace(placeholder, value)
    (project / "migrations" / "env.py").write_text(text)
    if broken:
        models = project / "models.py"
        extra = (CORPUS / "broken" / "models_extra.py").read_text()
        models.write_text(models.read_text().replace("    bio: Mapped[str | None] = mapped_column(sa.Text)\n", "    bio: Mapped[str | None] = mapped_column(sa.Text)\n" + extra))
        for revision in (CORPUS / "broken" / "migrations" / "versions").glob("*.py"):
            shutil.copy(revision, project / "migrations" / "versions" / revision.name)
    return project


@pytest.fixture(scope="module")
def real_database(dbtasks_server_url):
    """A database an env.py might name: the corpus' first revision applied, rows in it.

    One per module (per xdist worker): the tests only read it, and each one takes
    its fingerprint before and proves it unchanged after.
    """
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_test"))
    try:
        with connect(url, autocommit=True) as conn:
            conn.execute(sa.text("create type post_status as enum ('draft', 'published')"))
            conn.execute(sa.text("create table users (id bigint primary key, email varchar(255) not null unique, name text not null)"))
            conn.execute(sa.text("create table alembic_version (version_num varchar(32) primary key)"))
            conn.execute(sa.text("insert into alembic_version values ('a0a0a0a0a001')"))
            conn.execute(sa.text("insert into users select g, 'u' || g || '@example.com', 'user ' || g from generate_series(1, 50) g"))
        yield url
    finally:
        drop_database(dbtasks_server_url, url.database)


def fingerprint(url) -> tuple:
    with connect(url) as conn:
        snap = snapshot.take(conn, "no-such-table")
        counts = conn.execute(sa.text("select count(*) from users")).scalar()
        version = conn.execute(sa.text("select version_num from alembic_version")).scalars().all()
    return snap, counts, version


def environment(variant: str, real) -> dict[str, str]:
    url = real if variant != "async_engine" else real.set(drivername="postgresql+asyncpg")
    return {
        "DATABASE_URL": url_str(url),
        "POSTGRESQL_HOST": real.host, "POSTGRESQL_PORT": str(real.port), "POSTGRESQL_DATABASE": real.database,
        "POSTGRESQL_USER": real.username, "POSTGRESQL_PASSWORD": str(real.password or ""),
    }


def check(project: Path, variant: str, real, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return run(["-c", str(project / "alembic.ini"), "check", "--all", "--format", "json"], elsewhere, **environment(variant, real))


def verdict(proc) -> tuple[int, set]:
    assert "Traceback" not in proc.stderr, proc.stderr
    try:
        found = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON findings: {proc.stdout} {proc.stderr}")
    return proc.returncode, {(f["check"], f["rule"], f["revision"]) for f in found}


@pytest.fixture(scope="module")
def cookbook_verdicts(tmp_path_factory, dbtasks_server_url):
    """What the Alembic cookbook env.py gets, clean (False) and broken (True): the reference.

    ``cookbook_verdicts(broken)`` runs the check once per test session, when a
    test first asks: under pytest-xdist the first worker to ask writes the
    verdict to the session's shared temporary directory (under a lock) and the
    other worker reads it. Tests ask after their own check ran, so a worker
    checks its variant while the other one computes the reference.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # xdist: <session>/popen-gwN
    real = dbtasks_server_url.set(database="postgres")
    known: dict[bool, tuple[int, set]] = {}

    def reference(broken: bool) -> tuple[int, set]:
        if broken not in known:
            path = shared / f"envpy-cookbook-{'broken' if broken else 'clean'}.json"
            with open(path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not path.exists():
                    tmp = tmp_path_factory.mktemp("cookbook")
                    code, found = verdict(check(corpus(tmp, "cookbook", broken), "cookbook", real, tmp))
                    path.write_text(json.dumps([code, sorted(found, key=str)]))
            code, found = json.loads(path.read_text())
            known[broken] = (code, {tuple(f) for f in found})
        return known[broken]

    return reference


def test_the_reference_verdicts_pass_clean_and_fail_broken(cookbook_verdicts):
    code, found = cookbook_verdicts(False)
    assert code == 0 and not {f for f in found if f[1] != "empty-downgrade"}, found
    code, found = cookbook_verdicts(True)
    assert code == 1
    assert ("drift", "model-drift", None) in found
    assert ("roundtrip", "downgrade-leaves-objects", "c9c9c9c9c901") in found


@pytest.mark.parametrize("broken", [False, True], ids=["clean", "broken"])
@pytest.mark.parametrize("variant", VARIANTS[1:])
def test_every_env_py_gets_the_same_verdicts_and_the_real_database_is_untouched(variant, broken, real_database, cookbook_verdicts, tmp_path):
    project = corpus(tmp_path, variant, broken, HARD_CODED_URL=url_str(real_database))
    before = fingerprint(real_database)
    proc = check(project, variant, real_database, tmp_path)
    assert verdict(proc) == cookbook_verdicts(broken), (proc.stdout, proc.stderr)
    assert fingerprint(real_database) == before
    if variant in ("own_variables", "hard_coded"):
        # env.py asked for the real database: it was given the scratch one, and told so
        assert "dbtasks connected it to the scratch database" in proc.stderr and real_database.database in proc.stderr


def test_make_check_leaves_the_database_of_DATABASE_URL_byte_for_byte_unchanged(real_database, tmp_path):
    project = corpus(tmp_path, "database_url", broken=True)
    shutil.copy(REPO / "dbtasks" / "share" / "dbtasks.mk", project / "dbtasks.mk")  # as `dbtasks adopt` does
    (project / "Makefile").write_text("include dbtasks.mk\n")
    before = fingerprint(real_database)
    proc = run_make("check", project, DBTASKS_ALL="1", **environment("database_url", real_database))
    assert proc.returncode != 0 and "model-drift" in proc.stdout, proc.stdout + proc.stderr
    assert fingerprint(real_database) == before


def test_a_leaking_env_py_is_stopped_by_the_tripwire_in_one_line(real_database, tmp_path):
    port = free_port()
    project = corpus(tmp_path, "leaking", **{'("127.0.0.1", 0)': f'("127.0.0.1", {port})'})
    before = fingerprint(real_database)
    proc = run(["-c", str(project / "alembic.ini"), "check-roundtrip"], tmp_path, DATABASE_URL=url_str(real_database))
    assert_one_line_error(proc, f"env.py tried to connect to 127.0.0.1:{port}", "config.attributes['connection']")
    assert fingerprint(real_database) == before


def test_the_async_template_runs_on_asyncpg_when_no_url_names_a_driver(dbtasks_server_url, tmp_path):
    """`alembic init -t async` builds an async engine from sqlalchemy.url: a plain postgresql:// DATABASE_URL
    (or none, the local server) must reach it as asyncpg, not psycopg2, for upgrade, check and downgrade."""
    import subprocess

    from .conftest import BIN
    from .test_checks_lint import _write_revision

    project = tmp_path / "asyncapp"
    project.mkdir()
    subprocess.run([str(BIN / "alembic"), "init", "-t", "async", "alembic"], cwd=project, check=True, capture_output=True)
    assert "async_engine_from_config" in (project / "alembic" / "env.py").read_text()
    _write_revision(project, "a1a1a1a1a1a1", None, '    op.create_table("notes", sa.Column("id", sa.BigInteger(), primary_key=True))\n')
    path = next((project / "alembic" / "versions").glob("*.py"))
    path.write_text(path.read_text().replace('raise NotImplementedError("test")', 'op.drop_table("notes")'))
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_async"))
    plain = url_str(url.set(drivername="postgresql"))
    try:
        up = run(["upgrade"], project, DATABASE_URL=plain)
        assert up.returncode == 0, up.stdout + up.stderr
        with connect(url) as conn:
            assert conn.execute(sa.text("select to_regclass('public.notes') is not null")).scalar()
        checked = run(["check-roundtrip"], project, DATABASE_URL=plain, DBTASKS_ALL="1")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        down = run(["downgrade"], project, DATABASE_URL=plain)
        assert down.returncode == 0, down.stdout + down.stderr
        with connect(url) as conn:
            assert not conn.execute(sa.text("select to_regclass('public.notes') is not null")).scalar()
    finally:
        drop_database(dbtasks_server_url, url.database)
