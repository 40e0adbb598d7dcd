"""dump-db, restore-db and dump-and-restore end to end, against real PostgreSQL servers.

The restore must never risk the current database: killed at any stage, the
database under the target name is the old one row for row (or, after the
swap committed, the new one), and the next run cleans up what was left.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from dbtasks.clients import ClientVersionError, available_clients, find_client
from dbtasks.database import create_database, drop_database, scratch_name

from .conftest import REPO, assert_one_line_error, run, url_str
from .data_helpers import (
    REMOTE,
    database_names,
    execute,
    fingerprint,
    kill,
    leftover_names,
    remote_available,
    rows,
    run_until_paused,
    seed,
)


@pytest.fixture(scope="module")
def seeded(dbtasks_server_url, dbtasks_template):
    """A migrated database holding the demo data, made once per module (per xdist worker): (url, its fingerprint)."""
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_test"), template=dbtasks_template.database)
    try:
        seed(url)
        yield url, fingerprint(url)
    finally:
        drop_database(dbtasks_server_url, url.database)


@pytest.fixture
def source(seeded):
    """A migrated database holding the demo data, which the test only reads (dumps).

    The module's one seeded database: after each test it must still be what it
    was, so no test sees another's writes (a test that writes gets its own copy).
    """
    url, made = seeded
    yield url
    assert fingerprint(url) == made, "the test changed the shared source database"


@pytest.fixture
def target(dbtasks_server_url, dbtasks_template):
    """A migrated local database with different data, standing for the developer's database."""
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_test"), template=dbtasks_template.database)
    execute(url, "insert into users (email, name) values ('local@dev.test', 'Local Dev')")
    yield url
    drop_database(dbtasks_server_url, url.database)
    for name in leftover_names(dbtasks_server_url):
        drop_database(dbtasks_server_url, name)


def dump(project: Path, url, path: Path, *flags: str):
    proc = run(["dump-db", "--output", str(path), *flags], project, DATABASE_URL=url_str(url))
    assert proc.returncode == 0, proc.stderr
    assert path.exists()
    return proc


@pytest.fixture(scope="module")
def demo_dump(seeded, tmp_path_factory) -> tuple[Path, dict]:
    """A dump of the demo data made once, for the tests that only restore one: (file, fingerprint of its source)."""
    url, made = seeded
    path = tmp_path_factory.mktemp("demo-dump") / "app.dump"
    dump(REPO, url, path)
    assert fingerprint(url) == made
    return path, made


@pytest.fixture(scope="module")
def _kept_target(dbtasks_server_url, dbtasks_template):
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_test"), template=dbtasks_template.database)
    execute(url, "insert into users (email, name) values ('local@dev.test', 'Local Dev')")
    yield url
    drop_database(dbtasks_server_url, url.database)


@pytest.fixture
def refusing_target(_kept_target, dbtasks_server_url):
    """A target (as ``target``) for the tests where the command must refuse: one per module (per xdist
    worker), since each such test proves it unchanged (its own fingerprint before and after)."""
    yield _kept_target
    for name in leftover_names(dbtasks_server_url):
        drop_database(dbtasks_server_url, name)


# -- happy paths -----------------------------------------------------------------


def test_dump_then_restore_replaces_the_database_row_for_row(project, source, target, dbtasks_server_url, tmp_path):
    before = fingerprint(source)
    path = tmp_path / "app.dump"
    (revision,) = rows(source, "select version_num from alembic_version")[0]
    dumped = dump(project, source, path)
    assert f"dumped {source.database} to {path} (custom format, " in dumped.stdout and f"revision {revision}," in dumped.stdout
    proc = run(["restore-db", "--file", str(path), "--jobs", "2"], project, DATABASE_URL=url_str(target))
    assert proc.returncode == 0, proc.stderr
    assert f"replaced database {target.database}" in proc.stdout
    assert fingerprint(target) == before
    assert not leftover_names(dbtasks_server_url)
    # The source is untouched.
    assert fingerprint(source) == before


def test_restore_creates_a_missing_database_and_file_comes_from_FILE(project, demo_dump, dbtasks_server_url):
    path, want = demo_dump
    fresh = dbtasks_server_url.set(database="dbtasks_test_fresh_restore")
    try:
        proc = run(["restore-db"], project, DATABASE_URL=url_str(fresh), FILE=str(path))
        assert proc.returncode == 0, proc.stderr
        assert "created database dbtasks_test_fresh_restore" in proc.stdout
        assert fingerprint(fresh) == want
    finally:
        drop_database(dbtasks_server_url, fresh.database)


def test_directory_format_parallel_dump_leaves_out_excluded_rows(project, source, target, tmp_path):
    path = tmp_path / "app.dir"
    dump(project, source, path, "--format", "directory", "--jobs", "2", "--exclude-data", "public.comments")
    assert (path / "toc.dat").is_file()
    proc = run(["restore-db", "--file", str(path)], project, DATABASE_URL=url_str(target))
    assert proc.returncode == 0, proc.stderr
    got, want = fingerprint(target), fingerprint(source)
    assert got["public.comments"][0] == 0 and want["public.comments"][0] > 0
    assert {k: v for k, v in got.items() if k != "public.comments"} == {k: v for k, v in want.items() if k != "public.comments"}


def test_exclusion_patterns_come_from_settings(project, source, tmp_path):
    path = tmp_path / "app.dump"
    proc = run(["dump-db", "--output", str(path)], project, DATABASE_URL=url_str(source), DBTASKS_DUMP_EXCLUDE_DATA="public.comments,public.task_tags")
    assert proc.returncode == 0, proc.stderr
    assert "rows left out: public.comments, public.task_tags" in proc.stdout
    from dbtasks.data.dump import read_archive

    data = " ".join(read_archive(path).data_entries)
    assert "comments" not in data and "task_tags" not in data and "tasks" in data


def test_restore_with_owner_role_makes_that_role_own_everything(project, demo_dump, target):
    execute(target, "do $$ begin if not exists (select from pg_roles where rolname = 'dbtasks_app') then create role dbtasks_app; end if; end $$")
    path, _ = demo_dump
    proc = run(["restore-db", "--file", str(path), "--owner", "dbtasks_app"], project, DATABASE_URL=url_str(target))
    assert proc.returncode == 0, proc.stderr
    owners = {r[0] for r in rows(target, "select tableowner from pg_tables where schemaname = 'public'")}
    assert owners == {"dbtasks_app"}
    assert rows(target, "select pg_get_userbyid(datdba) from pg_database where datname = current_database()") == [("dbtasks_app",)]


@pytest.mark.skipif(not remote_available(), reason="no PostgreSQL on 127.0.0.1:5432 to act as a second server")
def test_round_trip_between_two_servers_keeps_rows_checksums_and_sequences(project, dbtasks_database, tmp_path):
    source = dbtasks_database  # its own copy: the test moves a sequence
    seed(source)
    execute(source, "select setval('users_id_seq', 5000)")  # a sequence ahead of its rows must survive too
    before = fingerprint(source)
    remote = REMOTE.set(database=f"dbtasks_rt_{os.getpid()}")
    back = source.set(database=f"dbtasks_rt_back_{os.getpid()}")
    try:
        dump(project, source, tmp_path / "there.dump")
        # Another server is protected by default: the restore into it needs the database name.
        proc = run(["restore-db", "--file", str(tmp_path / "there.dump"), f"--confirm={remote.database}"], project, DATABASE_URL=url_str(remote))
        assert proc.returncode == 0, proc.stderr
        assert fingerprint(remote) == before
        assert before["seq public.users_id_seq"] == (5000, True)
        dump(project, remote, tmp_path / "back.dump", "--format", "directory")
        proc = run(["restore-db", "--file", str(tmp_path / "back.dump")], project, DATABASE_URL=url_str(back))
        assert proc.returncode == 0, proc.stderr
        assert fingerprint(back) == before
    finally:
        drop_database(REMOTE, remote.database)
        drop_database(source, back.database)


# -- dump-and-restore ---------------------------------------------------------------


def test_dump_and_restore_full_mode(project, source, target, dbtasks_server_url, tmp_path):
    proc = run(["dump-and-restore", "--from", "staging", "--mode", "full"], project,
               DATABASE_URL=url_str(target), STAGING_DATABASE_URL=url_str(source), DBTASKS_DUMP_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(target) == fingerprint(source)
    # dump-and-restore's own dump: the directory format, uncompressed (read back at once, on this machine).
    (kept,) = tmp_path.glob("*.dir")
    assert (kept / "toc.dat").is_file() and not list(kept.glob("*.gz"))


def add_label_revision(project: Path, url) -> str:
    """A second revision in the project copy (the dump's source stays at the first)."""
    with (project / "app" / "models.py").open("a") as fh:
        fh.write(textwrap.dedent('''

            class Label(Base):
                __tablename__ = "labels"

                id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
                color: Mapped[str] = mapped_column(String(20), server_default="grey")
        '''))
    proc = run(["revision", "--autogenerate", "-m", "add labels"], project, DATABASE_URL=url_str(url))
    assert proc.returncode == 0, proc.stderr
    import re

    return re.search(r"created (\w+):", proc.stdout).group(1)


@pytest.mark.slow
def test_dump_and_restore_schema_mode_builds_from_our_migrations_then_upgrades(project, source, target, dbtasks_server_url, dbtasks_template, tmp_path):
    old_rev = rows(source, "select version_num from alembic_version")[0][0]
    from dbtasks.testing import clone

    with clone(dbtasks_server_url, dbtasks_template) as scratch:  # a database at head, to autogenerate against
        new_rev = add_label_revision(project, scratch)
    # Production has a column our migrations do not know: schema mode must not bring it.
    proc = run(["dump-and-restore"], project, DATABASE_URL=url_str(target), FROM="prod",
               PROD_DATABASE_URL=url_str(source), DBTASKS_DUMP_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"schema from migrations at {old_rev}" in proc.stdout
    assert rows(target, "select version_num from alembic_version") == [(new_rev,)]
    assert rows(target, "select count(*) from labels") == [(0,)]
    got, want = fingerprint(target), fingerprint(source)
    for table in ("public.users", "public.projects", "public.tasks", "public.comments", "public.tags", "public.task_tags"):
        assert got[table] == want[table], table
    assert got["seq public.tasks_id_seq"] == want["seq public.tasks_id_seq"]


def test_dump_and_restore_refuses_a_protected_target(project, source, refusing_target, tmp_path):
    before = fingerprint(refusing_target)
    proc = run(["--env", "prod", "dump-and-restore", "--from", "staging"], project,
               PROD_DATABASE_URL=url_str(refusing_target), STAGING_DATABASE_URL=url_str(source), DBTASKS_DUMP_DIR=str(tmp_path / "dumps"))
    assert_one_line_error(proc, "refusing to dump-and-restore into protected environment 'prod'")
    assert fingerprint(refusing_target) == before and not (tmp_path / "dumps").exists()


def test_dump_and_restore_unknown_source_environment(project, refusing_target, tmp_path):
    before = fingerprint(refusing_target)
    proc = run(["dump-and-restore"], project, DATABASE_URL=url_str(refusing_target), FROM="qa", DBTASKS_DUMP_DIR=str(tmp_path / "dumps"))
    assert_one_line_error(proc, "environment 'qa' is not configured", "QA_DATABASE_URL")
    assert fingerprint(refusing_target) == before and not (tmp_path / "dumps").exists()


# -- bad input: one line, exit 2, nothing changed -------------------------------------------


def test_restore_of_a_missing_file(project, refusing_target, dbtasks_server_url, tmp_path):
    before = fingerprint(refusing_target)
    proc = run(["restore-db", "--file", str(tmp_path / "nope.dump")], project, DATABASE_URL=url_str(refusing_target))
    assert_one_line_error(proc, "nope.dump does not exist")
    assert fingerprint(refusing_target) == before and not leftover_names(dbtasks_server_url)


@pytest.mark.parametrize("content", [b"", b"this is not a dump\n" * 50, b"PGDMP\x01\x0e\x00garbage"])
def test_restore_of_a_corrupt_file(project, refusing_target, dbtasks_server_url, tmp_path, content):
    bad = tmp_path / "bad.dump"
    bad.write_bytes(content)
    before = fingerprint(refusing_target)
    proc = run(["restore-db", "--file", str(bad)], project, DATABASE_URL=url_str(refusing_target))
    assert_one_line_error(proc, "bad.dump is not a readable pg_dump archive")
    assert fingerprint(refusing_target) == before and not leftover_names(dbtasks_server_url)


def test_restore_of_a_truncated_dump_keeps_the_old_database(project, demo_dump, refusing_target, dbtasks_server_url, tmp_path):
    good, _ = demo_dump
    cut = tmp_path / "cut.dump"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    before = fingerprint(refusing_target)
    proc = run(["restore-db", "--file", str(cut)], project, DATABASE_URL=url_str(refusing_target))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert fingerprint(refusing_target) == before and not leftover_names(dbtasks_server_url)


def test_restore_into_a_protected_environment_needs_confirmation(project, demo_dump, target, dbtasks_server_url):
    path, want = demo_dump
    before = fingerprint(target)
    proc = run(["--env", "prod", "restore-db", "--file", str(path)], project, PROD_DATABASE_URL=url_str(target))
    assert_one_line_error(proc, "refusing to restore app.dump into the database without confirmation: protected environment 'prod'", f"--confirm={target.database}")
    assert fingerprint(target) == before and not leftover_names(dbtasks_server_url)
    proc = run(["--env", "prod", "restore-db", "--file", str(path), "--confirm", target.database], project, PROD_DATABASE_URL=url_str(target))
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(target) == want


def test_unknown_environment_for_dump(project, tmp_path):
    proc = run(["--env", "nowhere", "dump-db", "--output", str(tmp_path / "x.dump")], project)
    assert_one_line_error(proc, "environment 'nowhere' is not configured", "NOWHERE_DATABASE_URL")
    assert not list(tmp_path.glob("x.dump*"))


def test_no_client_new_enough_is_a_clear_error():
    with pytest.raises(ClientVersionError) as info:
        find_client("pg_dump", min_major=99, why="the server runs PostgreSQL 99")
    text = str(info.value)
    assert "no pg_dump of PostgreSQL 99 or newer is installed" in text and "PG_BIN" in text


def test_client_choice_prefers_the_server_version_else_the_lowest_new_enough():
    majors = sorted({c.major for c in available_clients("pg_dump")})
    assert majors, "the tests need at least one pg_dump"
    for wanted in majors:
        assert find_client("pg_dump", min_major=wanted, prefer=wanted).major == wanted
    assert find_client("pg_dump", min_major=majors[0], prefer=None).major == majors[0]
    # A server newer than one installation but not the other gets the newer one.
    if len(majors) > 1:
        assert find_client("pg_dump", min_major=majors[0] + 1, prefer=majors[0] + 1).major == next(m for m in majors if m > majors[0])


@pytest.fixture(scope="module")
def newer_server():
    """A PostgreSQL 16 server from the pgserver wheel, newer than the test server (15)."""
    from dbtasks.server import binary_major_version, find_bin_dir, pgserver_bin_dir
    from dbtasks.testing import throwaway_server

    bundled = pgserver_bin_dir()
    if bundled is None or binary_major_version(bundled) <= binary_major_version(find_bin_dir(os.environ.get("PG_BIN"))):
        pytest.skip("no PostgreSQL binaries newer than the test server's")
    with throwaway_server(pg_bin=str(bundled)) as url:
        yield url


def test_dump_from_a_newer_server_uses_a_new_enough_pg_dump_and_is_refused_by_an_older_server(project, newer_server, refusing_target, dbtasks_server_url, tmp_path):
    from dbtasks.database import create_database

    src = create_database(newer_server, "newer_src")
    execute(src, "create table t (id int primary key)", "insert into t select generate_series(1, 10)")
    path = tmp_path / "newer.dump"
    proc = run(["dump-db", "--output", str(path)], project, DATABASE_URL=url_str(src))
    assert proc.returncode == 0, proc.stderr
    assert "server PostgreSQL 16" in proc.stdout and "pg_dump 16" in proc.stdout
    before = fingerprint(refusing_target)
    proc = run(["restore-db", "--file", str(path)], project, DATABASE_URL=url_str(refusing_target))
    assert_one_line_error(proc, "newer.dump is a dump of a PostgreSQL 16 server, newer than the PostgreSQL 15 server")
    assert fingerprint(refusing_target) == before and not leftover_names(dbtasks_server_url)


# -- interruptions ------------------------------------------------------------------------


STAGES_BEFORE_SWAP = ["dump-running", "dumped", "restore-running", "before-swap", "swap-uncommitted"]


@pytest.mark.parametrize("stage", STAGES_BEFORE_SWAP + ["after-swap"])
def test_killed_restore_leaves_the_old_database_and_the_next_run_cleans_up(project, source, target, dbtasks_server_url, tmp_path, stage):
    before = fingerprint(target)
    wanted = fingerprint(source)
    env = dict(DATABASE_URL=url_str(target), FROM="staging", STAGING_DATABASE_URL=url_str(source), DBTASKS_DUMP_DIR=str(tmp_path / "dumps"))
    proc = run_until_paused(["dump-and-restore", "--mode", "full"], project, stage, tmp_path / "paused", **env)
    kill(proc)

    if stage in STAGES_BEFORE_SWAP:
        assert fingerprint(target) == before, f"killed at {stage}: the local database changed"
    else:
        assert fingerprint(target) == wanted, "after the swap committed the new database must be complete"
    assert target.database in database_names(dbtasks_server_url)
    left = leftover_names(dbtasks_server_url)
    if stage in ("restore-running", "before-swap", "swap-uncommitted", "after-swap"):
        assert left, f"killed at {stage}, a scratch or old database should be left for the next run"
    else:
        assert not left, f"killed at {stage}, before any database was created: {left}"

    again = run(["dump-and-restore", "--mode", "full"], project, **env)
    assert again.returncode == 0, again.stderr
    for name in left:
        assert f"removed {name}" in again.stdout
    assert not leftover_names(dbtasks_server_url)
    assert fingerprint(target) == wanted
    # A killed dump leaves no partial file behind once the next dump ran.
    assert not [p for p in (tmp_path / "dumps").iterdir() if ".partial-" in p.name]


def test_restore_with_an_unknown_owner_role_changes_nothing(project, demo_dump, refusing_target, dbtasks_server_url):
    path, _ = demo_dump
    before = fingerprint(refusing_target)
    proc = run(["restore-db", "--file", str(path), "--owner", "no_such_role_here"], project, DATABASE_URL=url_str(refusing_target))
    assert_one_line_error(proc, "role 'no_such_role_here' does not exist")
    assert fingerprint(refusing_target) == before and not leftover_names(dbtasks_server_url)


# -- recipes and secrets --------------------------------------------------------------------


@pytest.mark.parametrize("runner", ["make", "just"])
def test_recipes_pass_FILE_literally_and_fail_in_one_line(project, refusing_target, runner, tmp_path):
    from .conftest import run_just, run_make

    odd = str(tmp_path / "it's $(touch pwned) `x`; .dump")
    env = {"DATABASE_URL": url_str(refusing_target)}
    if runner == "make":
        proc = run_make("restore-db", project, f"FILE={odd}", **env)
    else:
        proc = run_just(["restore-db", odd], project, **env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert f"dump file {odd} does not exist" in proc.stderr
    assert not (project / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_password_never_shows_in_output(project, source, tmp_path):
    secret = "s3cr3t-Pa55word"
    url = source.set(password=secret)
    proc = run(["dump-db", "--output", str(tmp_path / "x.dump")], project, DATABASE_URL=url_str(url))
    assert_one_line_error(proc, "password authentication failed")
    assert secret not in proc.stdout + proc.stderr
    assert not list(tmp_path.glob("x.dump*"))


def test_a_password_user_dumps_and_restores_without_showing_it(project, source, target, tmp_path):
    secret = "dbtasks-Secret-9x"
    execute(source, "do $$ begin if not exists (select from pg_roles where rolname = 'dbtasks_pw') then "
                    f"create role dbtasks_pw login superuser password '{secret}'; end if; end $$")
    src, dst = source.set(username="dbtasks_pw", password=secret), target.set(username="dbtasks_pw", password=secret)
    path = tmp_path / "pw.dump"
    proc = run(["dump-db", "--output", str(path)], project, DATABASE_URL=url_str(src))
    assert proc.returncode == 0, proc.stderr
    again = run(["restore-db", "--file", str(path)], project, DATABASE_URL=url_str(dst))
    assert again.returncode == 0, again.stderr
    for p in (proc, again):
        assert secret not in p.stdout + p.stderr
    assert fingerprint(target) == fingerprint(source)


# -- progress in bytes of table data, with a total from <dump>.meta.json -------------------


@pytest.fixture(scope="module")
def sized_source(dbtasks_server_url, dbtasks_template):
    """A migrated database holding the demo data and ~6 MB in one more indexed table."""
    url = create_database(dbtasks_server_url, scratch_name("dbtasks_test"), template=dbtasks_template.database)
    seed(url)
    execute(
        url,
        "create table events (id int primary key, payload text)",
        "insert into events select g, md5(g::text) || md5((g * 7)::text) from generate_series(1, 60000) g",
        "create index events_payload on events (payload)",
        "analyze",
    )
    yield url
    drop_database(dbtasks_server_url, url.database)


def _settings(url, project: Path = REPO, **values):
    from .data_helpers import settings_for

    return settings_for(url, project, **values)


def _stages(events) -> dict[str, list]:
    by: dict[str, list] = {}
    for e in events:
        by.setdefault(e.stage, []).append(e)
    return by


def test_dump_progress_counts_bytes_of_table_data_up_to_the_total_and_records_it(sized_source, tmp_path):
    from dbtasks.data.dump import dump_db
    from dbtasks.data.tools import meta_path, read_meta

    events = []
    result = dump_db(_settings(sized_source), output=tmp_path / "app.dump", exclude_data=("public.comm*",), progress=events.append)
    assert {e.stage for e in events} == {"dump"} and {e.unit for e in events} == {"bytes"}
    done = [e.done for e in events]
    assert done == sorted(done) and events[-1].done == events[-1].total == result.data_bytes
    recorded = read_meta(result.path)
    assert "public.comments" not in recorded and "public.users" in recorded  # rows left out weigh nothing
    assert recorded["public.events"].bytes > 4 * 1024 * 1024 and recorded["public.events"].rows == 60000
    assert sum(s.bytes for s in recorded.values()) == result.data_bytes
    assert meta_path(result.path).name == "app.dump.meta.json"


def test_restore_progress_reaches_the_recorded_total_then_shows_the_index_builds(project, sized_source, target, tmp_path):
    from dbtasks.data.dump import dump_db, read_archive
    from dbtasks.data.restore import index_builds, restore_db

    dumped = dump_db(_settings(sized_source), output=tmp_path / "app.dump")
    events = []
    result = restore_db(_settings(target, project), dumped.path, jobs=1, progress=events.append)
    stages = _stages(events)
    data = stages["restore"]
    assert data[-1].done == data[-1].total == dumped.data_bytes == result.data_bytes
    assert [e.done for e in data] == sorted(e.done for e in data) and all(e.unit == "bytes" for e in data)
    builds = index_builds(read_archive(dumped.path))
    assert builds >= 8  # primary keys, foreign keys, indexes
    assert stages["indexes"][-1].done == stages["indexes"][-1].total == builds
    assert list(stages) == ["restore", "indexes"]  # data first, then the index phase, never silent
    assert fingerprint(target)["public.events"] == fingerprint(sized_source)["public.events"]


def test_a_foreign_dump_restores_with_progress_in_bytes_without_a_total(project, sized_source, target, tmp_path):
    from dbtasks.data.dump import dump_db
    from dbtasks.data.restore import restore_db
    from dbtasks.data.tools import meta_path

    dumped = dump_db(_settings(sized_source), output=tmp_path / "app.dir", fmt="directory", jobs=2)
    meta_path(dumped.path).unlink()  # as a dump made by hand with pg_dump
    events = []
    result = restore_db(_settings(target, project), dumped.path, jobs=2, progress=events.append)
    data = _stages(events)["restore"]
    assert all(e.total is None for e in data)
    # Measured in the restored database: about the source's size (a fresh table has no dead rows).
    # With --jobs the data stage closes when the first index build starts, and a table may
    # still be loading then: how far the last data event got depends on timing, its bound does not.
    assert [e.done for e in data] == sorted(e.done for e in data) and data[-1].done > 0
    assert data[-1].done <= result.data_bytes
    assert 0.5 * dumped.data_bytes < result.data_bytes < 1.5 * dumped.data_bytes


def test_a_corrupt_sidecar_only_costs_the_total(project, demo_dump, target, tmp_path):
    from dbtasks.data.restore import restore_db

    path = tmp_path / "app.dump"
    shutil.copy(demo_dump[0], path)
    (tmp_path / "app.dump.meta.json").write_text("{not json")
    events = []
    restore_db(_settings(target, project), path, progress=events.append)
    assert fingerprint(target) == demo_dump[1]
    assert all(e.total is None for e in _stages(events)["restore"])


def test_sidecars_follow_their_dumps_kept_renamed_and_rotated(project, source, target, tmp_path):
    proc = run(["dump-and-restore", "--from", "staging", "--mode", "full"], project,
               DATABASE_URL=url_str(target), STAGING_DATABASE_URL=url_str(source), DBTASKS_DUMP_DIR=str(tmp_path / "dumps"))
    assert proc.returncode == 0, proc.stderr
    assert "of table data" in proc.stdout
    (kept,) = (tmp_path / "dumps").glob("*.dir")
    assert sorted(p.name for p in (tmp_path / "dumps").iterdir()) == [kept.name, f"{kept.name}.meta.json"]
    for _ in range(3):
        proc = run(["backup-db", "--dir", str(tmp_path / "backups"), "--keep", "2"], project, DATABASE_URL=url_str(source))
        assert proc.returncode == 0, proc.stderr
    # Backups have no sidecar (the directory holds backups only); a stray one goes with its backup.
    backups = sorted((tmp_path / "backups").iterdir())
    assert len(backups) == 2 and all(p.suffix == ".dump" for p in backups)
    shutil.copy(kept.with_name(kept.name + ".meta.json"), backups[0].with_name(backups[0].name + ".meta.json"))
    proc = run(["backup-db", "--dir", str(tmp_path / "backups"), "--keep", "2"], project, DATABASE_URL=url_str(source))
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "backups").iterdir())) == 2 and not backups[0].exists()


def test_without_progress_views_a_table_counts_once_the_next_one_starts():
    """PostgreSQL before 14 has no pg_stat_progress_copy (here: a server that does not answer the polling)."""
    from sqlalchemy.engine import URL

    from dbtasks.data.tools import CopyWatch, TableSize

    events = []
    nowhere = URL.create("postgresql+psycopg2", username="x", host="127.0.0.1", port=1, database="x")
    with CopyWatch(events.append, "dump", nowhere, {"public.a": TableSize(100), "public.b": TableSize(300)}, interval=0.01) as watch:
        watch.thread.join()  # the polling gave up
        watch.line('pg_dump: dumping contents of table "public.a"')
        assert events[-1].done == 0 and events[-1].detail == "public.a"
        watch.line('pg_dump: dumping contents of table "public.b"')
        assert events[-1].done == 100
        assert watch.finish() == 400
    assert (events[-1].done, events[-1].total, events[-1].unit) == (400, 400, "bytes")
