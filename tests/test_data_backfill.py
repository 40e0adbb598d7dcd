"""run-script and the batched backfill helper, against a real PostgreSQL.

A backfill killed mid-way and run again must end with every row updated
exactly once: each batch and its checkpoint commit together.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from dbtasks.data.backfill import BackfillError, batched_delete, batched_update, checkpoints
from dbtasks.database import make_engine
from dbtasks.errors import UsageError

from .conftest import assert_one_line_error, run, url_str
from .data_helpers import execute, kill, popen, rows, seed, settings_for


def make_counter_table(url, n: int) -> None:
    execute(url, "create table counters (id bigint primary key, hits int not null default 0, note text)",
            f"insert into counters (id) select g * 3 from generate_series(1, {n}) g")


def hits(url) -> dict[int, int]:
    """How many rows were updated how many times: {times: rows}."""
    return dict(rows(url, "select hits, count(*) from counters group by hits"))


# -- the helper ---------------------------------------------------------------------------


def test_batched_update_touches_every_row_once_and_reruns_do_nothing(dbtasks_database):
    make_counter_table(dbtasks_database, 2500)
    s = settings_for(dbtasks_database)
    seen = []
    result = batched_update(s, "counters", "hits = hits + 1", batch_size=100, max_batch_size=400, progress=seen.append)
    assert result.rows == 2500 and result.batches >= 7 and not result.resumed
    assert hits(dbtasks_database) == {1: 2500}
    assert seen[-1].done == 2500 and seen[-1].total == 2500 and seen[-1].unit == "rows"
    again = batched_update(s, "counters", "hits = hits + 1", batch_size=100)
    assert again.already_finished and again.rows == 0
    assert hits(dbtasks_database) == {1: 2500}
    (cp,) = checkpoints(s)
    assert cp["rows_done"] == 2500 and cp["finished_at"] is not None and cp["table_name"] == "public.counters"
    # The checkpoint table is out of Alembic's sight (its own schema).
    assert "dbtasks_backfill" not in {r[0] for r in rows(dbtasks_database, "select tablename from pg_tables where schemaname = 'public'")}


def test_where_and_params_limit_the_rows(dbtasks_database):
    make_counter_table(dbtasks_database, 1000)
    s = settings_for(dbtasks_database)
    result = batched_update(s, "counters", "note = :note", where="id % 2 = 0", params={"note": "even"}, batch_size=64)
    assert result.rows == 500
    assert rows(dbtasks_database, "select count(*) from counters where note = 'even'") == [(500,)]
    assert rows(dbtasks_database, "select count(*) from counters where note is null and id % 2 = 1") == [(500,)]


def test_dry_run_only_counts_and_writes_nothing(dbtasks_database):
    make_counter_table(dbtasks_database, 700)
    s = settings_for(dbtasks_database)
    result = batched_update(s, "counters", "hits = hits + 1", where="id > 300", batch_size=100, dry_run=True)
    assert result.dry_run and result.rows == 600 and result.batches == 6
    assert hits(dbtasks_database) == {0: 700}
    assert rows(dbtasks_database, "select to_regclass('dbtasks.backfill_checkpoints') is null") == [(True,)]


def test_batched_delete_on_a_composite_primary_key(dbtasks_database):
    seed(dbtasks_database)
    (tag,) = rows(dbtasks_database, "select tag_id from task_tags group by tag_id order by count(*) desc limit 1")[0]
    total = rows(dbtasks_database, "select count(*) from task_tags")[0][0]
    doomed = rows(dbtasks_database, "select count(*) from task_tags where tag_id = :t", {"t": tag})[0][0]
    result = batched_delete(settings_for(dbtasks_database), "task_tags", where="tag_id = :t", params={"t": tag}, batch_size=3, max_batch_size=3, target_seconds=3600)
    assert result.rows == doomed and result.batches == -(-doomed // 3)
    assert rows(dbtasks_database, "select count(*) from task_tags") == [(total - doomed,)]


def test_lock_timeout_stops_the_batch_and_a_rerun_resumes(dbtasks_database):
    make_counter_table(dbtasks_database, 300)
    s = settings_for(dbtasks_database)
    engine = make_engine(dbtasks_database)
    try:
        with engine.connect() as blocker:
            blocker.execute(sa.text("select * from counters where id = 600 for update"))  # row 200
            with pytest.raises(BackfillError) as info:
                batched_update(s, "counters", "hits = hits + 1", batch_size=50, max_batch_size=50, lock_timeout="100ms", retries=1)
            assert "lock timeout" in str(info.value) and "run again to resume" in str(info.value)
            partial = hits(dbtasks_database)
            assert 2 not in partial and 150 <= partial[1] < 200, partial
            assert rows(dbtasks_database, "select hits from counters where id = 600") == [(0,)]
            assert checkpoints(s)[0]["rows_done"] == partial[1]
            blocker.rollback()
    finally:
        engine.dispose()
    result = batched_update(s, "counters", "hits = hits + 1", batch_size=50, max_batch_size=50)
    assert result.resumed and result.rows == 300 - partial[1]
    assert hits(dbtasks_database) == {1: 300}


def test_bad_table_arguments(dbtasks_database):
    s = settings_for(dbtasks_database)
    execute(dbtasks_database, "create table no_pk (x int)")
    with pytest.raises(UsageError, match="has no primary key"):
        batched_update(s, "no_pk", "x = 1")
    with pytest.raises(UsageError, match="does not exist"):
        batched_update(s, "nope", "x = 1")


# -- run-script -------------------------------------------------------------------------------


def write(project: Path, rel: str, body: str) -> Path:
    path = project / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def test_kill_mid_backfill_then_resume_updates_every_row_exactly_once(project, dbtasks_database, tmp_path):
    make_counter_table(dbtasks_database, 6000)
    # The script stops itself once 500 rows are committed (STOP_FILE set), so the
    # kill always lands mid-way, whatever the machine's speed.
    write(project, "scripts/backfills/count_hits.py", """
        import os
        import time
        from pathlib import Path

        from dbtasks.data.backfill import batched_update

        TRANSACTION = False

        def main(settings, progress=None):
            def on_progress(p):
                if os.environ.get("STOP_FILE") and p.done >= 500:
                    Path(os.environ["STOP_FILE"]).write_text(str(os.getpid()))
                    time.sleep(600)  # killed here by the test

            r = batched_update(settings, "counters", "hits = hits + 1", name="count-hits",
                               batch_size=100, max_batch_size=100, progress=on_progress)
            return f"updated {r.rows} resumed={r.resumed}"
    """)
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    stopped = tmp_path / "stopped"
    proc = popen(["run-script", "scripts/backfills/count_hits.py"], project, STOP_FILE=str(stopped), **env)
    deadline = time.monotonic() + 120
    while not stopped.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the backfill did not reach 500 rows"
        time.sleep(0.05)
    kill(proc)
    partial = hits(dbtasks_database)
    assert 2 not in partial and 500 <= partial.get(1, 0) < 6000 and partial.get(0, 0) > 0, partial
    recorded = rows(dbtasks_database, "select rows_done from dbtasks.backfill_checkpoints where name = 'count-hits'")[0][0]
    assert recorded == partial[1], "the checkpoint must match what was applied"

    again = run(["run-script"], project, SCRIPT="scripts/backfills/count_hits.py", **env)
    assert again.returncode == 0, again.stderr
    assert "resumed=True" in again.stdout
    assert hits(dbtasks_database) == {1: 6000}


def test_example_backfill_with_dry_run_then_for_real(project, dbtasks_database):
    seed(dbtasks_database)
    todo = rows(dbtasks_database, "select count(*) from tasks where due_at is null and status <> 'done'")[0][0]
    assert todo > 0
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    dry = run(["run-script", "scripts/backfills/set_task_due_dates.py", "--dry-run"], project, **env)
    assert dry.returncode == 0, dry.stderr
    assert f"would update {todo} task(s)" in dry.stdout
    assert rows(dbtasks_database, "select count(*) from tasks where due_at is null and status <> 'done'") == [(todo,)]
    real = run(["run-script"], project, SCRIPT="scripts/backfills/set_task_due_dates.py", **env)
    assert real.returncode == 0, real.stderr
    assert f"updated {todo} task(s)" in real.stdout
    assert rows(dbtasks_database, "select count(*) from tasks where due_at is null and status <> 'done'") == [(0,)]
    assert rows(dbtasks_database, "select count(*) from tasks where due_at is not null and due_at <> created_at + interval '14 days' and status <> 'done' and due_at < created_at") == [(0,)]


def test_session_script_runs_in_one_transaction_and_rolls_back_on_error(project, dbtasks_database):
    seed(dbtasks_database)
    write(project, "scripts/backfills/rename.py", """
        from sqlalchemy import update
        from app.models import User

        def main(session):
            session.execute(update(User).values(name=User.name + " (renamed)"))
            return "renamed"
    """)
    write(project, "scripts/backfills/fails.py", """
        from sqlalchemy import text

        def main(connection):
            connection.execute(text("delete from comments"))
            raise RuntimeError("halfway")
    """)
    env = {"DATABASE_URL": url_str(dbtasks_database)}
    comments = rows(dbtasks_database, "select count(*) from comments")
    proc = run(["run-script", "scripts/backfills/fails.py"], project, **env)
    assert_one_line_error(proc, "fails.py failed: RuntimeError: halfway", "rolled back")
    assert rows(dbtasks_database, "select count(*) from comments") == comments
    proc = run(["run-script", "scripts/backfills/rename.py"], project, **env)
    assert proc.returncode == 0, proc.stderr
    assert "renamed" in proc.stdout
    assert rows(dbtasks_database, "select count(*) from users where name not like '%(renamed)'") == [(0,)]


def test_protected_environment_asks_for_confirmation(project, dbtasks_database):
    make_counter_table(dbtasks_database, 10)
    write(project, "scripts/backfills/touch.py", """
        from sqlalchemy import text

        def main(connection):
            connection.execute(text("update counters set hits = hits + 1"))
    """)
    env = {"PROD_DATABASE_URL": url_str(dbtasks_database)}
    proc = run(["--env", "prod", "run-script", "scripts/backfills/touch.py"], project, **env)
    assert_one_line_error(proc, "refusing to run scripts/backfills/touch.py without confirmation: protected environment 'prod'", f"--confirm={dbtasks_database.database}")
    assert hits(dbtasks_database) == {0: 10}
    proc = run(["--env", "prod", "run-script", "scripts/backfills/touch.py"], project, DBTASKS_CONFIRM=dbtasks_database.database, **env)
    assert proc.returncode == 0, proc.stderr
    assert hits(dbtasks_database) == {1: 10}


@pytest.mark.parametrize("where, message", [
    ("outside", "is outside the repository"),
    ("directory", "is not a file"),
    ("missing", "does not exist"),
    ("no-main", "has no main() function"),
    ("dry-run-unsupported", "does not support a dry run"),
])
def test_bad_scripts_are_refused_with_one_line(project, dbtasks_database, tmp_path, where, message):
    outside = write(tmp_path, "elsewhere/evil.py", "def main(connection):\n    raise SystemExit('ran')\n")
    write(project, "scripts/backfills/nomain.py", "x = 1\n")
    write(project, "scripts/backfills/plain.py", "def main(connection):\n    pass\n")
    args = {
        "outside": [str(outside)],
        "directory": ["scripts/backfills"],
        "missing": ["scripts/backfills/nope.py"],
        "no-main": ["scripts/backfills/nomain.py"],
        "dry-run-unsupported": ["scripts/backfills/plain.py", "--dry-run"],
    }[where]
    proc = run(["run-script", *args], project, DATABASE_URL=url_str(dbtasks_database))
    assert_one_line_error(proc, message)
