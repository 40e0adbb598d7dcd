"""db-cleanup: retention policies, leaf-first deletes in batches, dry run by default; and backup-db."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dbtasks.data.backup import backup_db, backup_files
from dbtasks.data.cleanup import Policy, cleanup
from dbtasks.data.dump import dump_db, read_archive, stamped_files, stamped_path, timestamp
from dbtasks.errors import UsageError

from .conftest import assert_one_line_error, run, url_str
from .data_helpers import execute, fingerprint, rows, seed, settings_for

POLICIES = """
[tool.dbtasks.cleanup]
older_than = "1 year"
batch_size = 7
orphans = ["tags"]

[tool.dbtasks.cleanup.tables]
tasks = "created_at"
comments = { column = "created_at", older_than = "2 years" }
"""


@pytest.fixture
def aged(dbtasks_database):
    """Demo data with a known share of old rows, and a child table whose foreign key does not cascade."""
    seed(dbtasks_database)
    execute(
        dbtasks_database,
        "update tasks set created_at = now() - interval '3 years' where id % 4 = 0",
        "update comments set created_at = now() - interval '30 months' where id % 5 = 0",
        "update comments set created_at = now() - interval '18 months' where id % 5 = 1",
        # NO ACTION: deleting a task before its notes would fail.
        "create table task_notes (id bigserial primary key, task_id bigint not null references tasks(id), body text)",
        "insert into task_notes (task_id, body) select id, 'note' from tasks where id % 2 = 0",
        "insert into tags (name) values ('never-used-1'), ('never-used-2')",
    )
    return dbtasks_database


def expected(url) -> dict[str, int]:
    old_task = "t.created_at < now() - interval '1 year'"
    q = {
        "public.task_notes": f"select count(*) from task_notes n join tasks t on t.id = n.task_id where {old_task}",
        "public.task_tags": f"select count(*) from task_tags x join tasks t on t.id = x.task_id where {old_task}",
        "public.comments": f"select count(*) from comments c join tasks t on t.id = c.task_id where c.created_at < now() - interval '2 years' or {old_task}",
        "public.tasks": f"select count(*) from tasks t where {old_task}",
        "public.tags": f"select count(*) from tags g where not exists (select 1 from task_tags x join tasks t on t.id = x.task_id where x.tag_id = g.id and not ({old_task}))",
    }
    return {table: rows(url, sql)[0][0] for table, sql in q.items()}


def with_policies(project: Path, text: str = POLICIES) -> Path:
    with (project / "pyproject.toml").open("a") as fh:
        fh.write(text)
    return project


def test_dry_run_by_default_counts_per_table_and_deletes_nothing(project, aged):
    with_policies(project)
    want = expected(aged)
    assert all(n > 0 for n in want.values()), want
    before = fingerprint(aged)
    proc = run(["cleanup"], project, DATABASE_URL=url_str(aged))
    assert proc.returncode == 0, proc.stderr
    for table, n in want.items():
        assert f"would delete {n:>9} {table}" in proc.stdout, (table, n, proc.stdout)
    assert "dry run:" in proc.stdout and "APPLY=1" in proc.stdout
    assert fingerprint(aged) == before


def test_apply_deletes_children_before_parents_in_batches(project, aged):
    with_policies(project)
    want = expected(aged)
    counts = {t: rows(aged, f"select count(*) from {t}")[0][0] for t in want}
    proc = run(["cleanup"], project, DATABASE_URL=url_str(aged), APPLY="1")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("deleted ")]
    order = [line.split()[2] for line in lines if len(line.split()) > 2 and line.split()[2].startswith("public.")]
    assert order.index("public.task_notes") < order.index("public.tasks")
    assert order.index("public.comments") < order.index("public.tasks")
    assert order.index("public.task_tags") < order.index("public.tags")
    for table, n in want.items():
        assert rows(aged, f"select count(*) from {table}")[0][0] == counts[table] - n, table
    assert rows(aged, "select count(*) from tasks where created_at < now() - interval '1 year'") == [(0,)]
    assert rows(aged, "select count(*) from comments where created_at < now() - interval '2 years'") == [(0,)]
    assert rows(aged, "select count(*) from tags where name like 'never-used-%'") == [(0,)]
    # Recent comments were kept, tags still in use were kept.
    assert rows(aged, "select count(*) from comments where created_at between now() - interval '2 years' and now() - interval '1 year'")[0][0] > 0
    again = run(["cleanup"], project, DATABASE_URL=url_str(aged))
    assert "dry run: 0 row(s) would be deleted" in again.stdout


def test_older_than_overrides_every_policy(aged):
    s = settings_for(aged)
    result = cleanup(s, older_than="20 years", policies=[Policy("tasks", "created_at", "1 year")], orphans=[])
    assert result.total == 0 and not result.applied
    result = cleanup(s, older_than="2 years", policies=[Policy("tasks", "created_at", "1 year")], orphans=[])
    assert {st.table: st.rows for st in result.steps}["public.tasks"] == rows(aged, "select count(*) from tasks where created_at < now() - interval '2 years'")[0][0]


def test_apply_on_a_protected_environment_needs_confirmation_but_a_dry_run_does_not(project, aged):
    with_policies(project)
    before = fingerprint(aged)
    env = {"PROD_DATABASE_URL": url_str(aged)}
    dry = run(["--env", "prod", "cleanup"], project, **env)
    assert dry.returncode == 0, dry.stderr
    proc = run(["--env", "prod", "cleanup", "--apply"], project, **env)
    assert_one_line_error(proc, "refusing to delete old rows without confirmation: protected environment 'prod'")
    assert fingerprint(aged) == before


@pytest.mark.parametrize("args, extra, message", [
    (["cleanup", "--older-than", "a while"], POLICIES, "OLDER_THAN='a while' is not a positive age"),
    (["cleanup"], "", "no retention policies are configured"),
    (["cleanup"], '\n[tool.dbtasks.cleanup.tables]\nghosts = "created_at"\n', "names table 'ghosts', which does not exist"),
    (["cleanup"], '\n[tool.dbtasks.cleanup.tables]\ntasks = "made_at"\n', "has no column 'made_at'"),
])
def test_bad_policies_and_ages(project, aged, args, extra, message):
    with_policies(project, extra.replace('[tool.dbtasks.cleanup.tables]\n', '[tool.dbtasks.cleanup]\nolder_than = "1 year"\n[tool.dbtasks.cleanup.tables]\n') if extra and "older_than" not in extra else extra)
    before = fingerprint(aged)
    proc = run([*args, "--apply"], project, DATABASE_URL=url_str(aged))
    assert_one_line_error(proc, message)
    assert fingerprint(aged) == before


# -- backup-db ----------------------------------------------------------------------------


def test_backup_keeps_the_newest_verified_backups(project, dbtasks_database, tmp_path):
    seed(dbtasks_database)
    backups = tmp_path / "backups"
    env = {"DATABASE_URL": url_str(dbtasks_database), "DBTASKS_BACKUP_DIR": str(backups)}
    first = run(["backup-db"], project, **env)
    assert first.returncode == 0, first.stderr
    (made,) = list(backups.iterdir())
    db = dbtasks_database.database
    assert re.fullmatch(rf"{db}-db-\d{{8}}T\d{{6}}\.\d{{6}}Z\.dump", made.name), made.name
    assert "verified" in first.stdout
    # Older backups (by their timestamps), one of them unrelated to this database.
    olds = [backups / f"{db}-db-20200101T000000Z.dump", backups / f"{db}-db-20210101T000000Z.dump"]
    for old in olds:
        shutil.copy(made, old)
    other = backups / "otherdb-db-20190101T000000Z.dump"
    shutil.copy(made, other)
    second = run(["backup-db"], project, KEEP="2", **env)
    assert second.returncode == 0, second.stderr
    left = sorted(p.name for p in backups.iterdir())
    assert len(left) == 3 and other.name in left and made.name in left
    assert not any(old.exists() for old in olds)
    assert second.stdout.count("deleted old backup") == len(olds)
    # Every kept backup is a readable archive.
    for path in backups.iterdir():
        assert subprocess.run(["pg_restore", "--list", str(path)], capture_output=True).returncode == 0


def test_two_backups_back_to_back_are_both_kept(dbtasks_database, tmp_path):
    """No clock luck: the second backup right after the first gets its own, later name."""
    s = settings_for(dbtasks_database)
    backups = tmp_path / "backups"
    first = backup_db(s, backups, keep=5)
    second = backup_db(s, backups, keep=5)
    assert first.dump.path != second.dump.path
    assert second.kept == [first.dump.path, second.dump.path] and second.deleted == []
    assert backup_files(backups, f"{dbtasks_database.database}-db") == [first.dump.path, second.dump.path]
    assert sorted(p.name for p in backups.iterdir()) == [first.dump.path.name, second.dump.path.name]
    for result in (first, second):
        assert read_archive(result.dump.path).entries


def test_a_backup_is_never_refused_or_made_older_by_the_clock(dbtasks_database, tmp_path):
    """An existing backup stamped later than now (same second, clock set back): the new one goes after it."""
    s = settings_for(dbtasks_database)
    backups = tmp_path / "backups"
    prefix = f"{dbtasks_database.database}-db"
    made = backup_db(s, backups, keep=5).dump.path
    ahead = datetime.now(timezone.utc) + timedelta(hours=1)
    later = [backups / f"{prefix}-{ahead:%Y%m%dT%H%M%SZ}.dump", backups / f"{prefix}-{ahead:%Y%m%dT%H%M%S}.000001Z.dump"]
    for path in later:
        shutil.copy(made, path)
    result = backup_db(s, backups, keep=2)
    assert result.dump.path.name == f"{prefix}-{ahead:%Y%m%dT%H%M%S}.000002Z.dump"
    assert result.deleted == [made, later[0]]
    assert backup_files(backups, prefix) == [later[1], result.dump.path]


def test_two_dumps_back_to_back_get_two_names(dbtasks_database, tmp_path):
    s = settings_for(dbtasks_database, dump_dir=str(tmp_path / "dumps"))
    first, second = dump_db(s), dump_db(s)
    assert first.path != second.path and first.path.exists() and second.path.exists()
    assert stamped_files(tmp_path / "dumps", f"{dbtasks_database.database}-db") == [first.path, second.path]


def test_backup_names_of_both_forms_sort_oldest_first(tmp_path):
    names = [
        "app-local-20251231T235959.999999Z.dump",
        "app-local-20260101T000000Z.dump",  # before names had microseconds
        "app-local-20260101T000000.000001Z.dir",
        "app-local-20260101T000000.500000Z.dump",
        "app-local-20260101T000001Z.dump",
    ]
    ignored = ["app-local-29990101T000000Z.dump.partial-123", "app-other-20260101T000000Z.dump", "app-local-latest.dump", "app-local-20260101T000000Z.sql"]
    for name in names + ignored:
        (tmp_path / name).touch()
    assert [p.name for p in backup_files(tmp_path, "app-local")] == names
    assert timestamp(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)) == "20260102T030405.000006Z"
    # a run still writing (its partial file) counts when choosing the next name
    assert stamped_path(tmp_path, "app-local", ".dump") == tmp_path / "app-local-29990101T000000.000001Z.dump"


def test_backup_refuses_keep_zero(project, dbtasks_database, tmp_path):
    proc = run(["backup-db", "--dir", str(tmp_path / "b")], project, DATABASE_URL=url_str(dbtasks_database), KEEP="0")
    assert_one_line_error(proc, "KEEP", "'0'")
    assert not (tmp_path / "b").exists()
    with pytest.raises(UsageError, match="KEEP=0 would delete every backup"):
        backup_db(settings_for(dbtasks_database), tmp_path / "b", keep=0)
    assert not (tmp_path / "b").exists()
