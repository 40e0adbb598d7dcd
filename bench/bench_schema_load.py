"""A fresh database at head: replaying the history against loading schema.sql, as a ratio.

Two generated histories (tests/history_helpers.py):

- 1,000 revisions with churn: 50 tables created, then columns and indexes
  added and dropped, so the schema stays small while the history grows (as
  real histories do). Replay pays for every step; a load builds only the
  final 50 tables.
- 200 revisions that only add objects: the schema grows with the history, so
  a load builds nearly as much as a replay and the gain is small (it comes
  from skipping Alembic's per-revision work: importing each revision module,
  one transaction and one version-table update per step).

For each: schema.sql is written once with ``regenerate-db-diagram`` (not
timed), then each run starts from a new empty database and times, in this
process, ``migrations.upgrade`` (what ``dbtasks upgrade`` / ``make db-migrate``
does) against ``schema_load.schema_load`` (``make db-schema-load``: the
freshness test, psql, the stamp). The best of ``--repeat`` runs is kept, and
the two databases are checked equal (catalog snapshot). Run:

    .venv/bin/python bench/bench_schema_load.py [--revisions 1000] [--add-only 200] [--repeat 3]

Uses TEST_DATABASE_URL when set, else starts a throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(server_url, root: Path, count: int, churn: bool, repeat: int) -> tuple[float, float]:
    from dbtasks import migrations, schema_load
    from dbtasks.checks import snapshot
    from dbtasks.config import load_settings
    from dbtasks.database import connect, create_database, drop_database, scratch_name
    from dbtasks.diagram.docs import regenerate_db_diagram
    from tests.history_helpers import generate_history

    ini = generate_history(root, count, churn=churn)
    dev = [f"{server_url.host}:{server_url.port}"]
    base = load_settings({"database_url": server_url.render_as_string(hide_password=False), "alembic_ini": str(ini), "dev_databases": dev}, project_dir=root)
    regenerate_db_diagram(base)

    def on_new_database(fn):
        name = scratch_name("bench_load")
        url = create_database(server_url, name)
        try:
            settings = base.with_(database_url=url.render_as_string(hide_password=False))
            with connect(server_url, autocommit=True) as conn:
                conn.exec_driver_sql("checkpoint")  # each run starts on a quiet server, not during the last one's writes
            started = time.perf_counter()
            fn(settings)
            seconds = time.perf_counter() - started
            with connect(url) as conn:
                taken = snapshot.take(conn)
            return seconds, taken
        finally:
            drop_database(server_url, name)

    replays, loads = [], []
    for _ in range(repeat):
        seconds, replayed = on_new_database(lambda s: migrations.upgrade(s))
        replays.append(seconds)
        seconds, loaded = on_new_database(lambda s: schema_load.schema_load(s))
        loads.append(seconds)
        if snapshot.difference(replayed, loaded) != ([], [], []):
            raise SystemExit(f"the loaded schema differs from the replayed one: {snapshot.difference(replayed, loaded)}")
    return min(replays), min(loads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=1000, help="revisions of the churn history")
    parser.add_argument("--add-only", type=int, default=200, help="revisions of the add-only history (0: skip)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)
    from dbtasks.testing import given_or_throwaway

    rows = []
    with given_or_throwaway(os.environ.get("TEST_DATABASE_URL")) as url, tempfile.TemporaryDirectory(prefix="dbtasks-bench-") as tmp:
        cases = [(f"{args.revisions} revisions, churn", args.revisions, True)]
        if args.add_only:
            cases.append((f"{args.add_only} revisions, add-only", args.add_only, False))
        for i, (name, count, churn) in enumerate(cases):
            replay, load = measure(url, Path(tmp) / f"h{i}", count, churn, args.repeat)
            rows.append((name, replay, load))
    print(f"{'history':<28} {'replay':>9} {'schema load':>12} {'ratio':>7}")
    for name, replay, load in rows:
        print(f"{name:<28} {replay:>8.2f}s {load:>11.2f}s {replay / load:>6.1f}x")
    print("ratio = replay seconds / schema-load seconds (best of each; the two schemas compared equal)")


if __name__ == "__main__":
    main()
