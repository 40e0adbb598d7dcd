"""Per-test database cost in the pytest plugin: a template clone per test against a rolled-back transaction.

    .venv/bin/python bench/bench_fixtures.py                   # 20 clones, 1000 transactions
    .venv/bin/python bench/bench_fixtures.py --clones 50 --transactions 5000

Builds the example application's template once (as ``dbtasks_template`` does),
then times, per simulated test, the same work (insert a row through an ORM
session that commits, read it back) on:

- ``dbtasks_database``: ``CREATE DATABASE ... TEMPLATE``, connect, the work,
  ``DROP DATABASE`` (:func:`dbtasks.testing.clone`);
- ``dbtasks_session``: a savepoint-joined session on the session-wide
  connection, inside a transaction rolled back afterwards
  (:func:`dbtasks.testing.rolled_back` on a :class:`dbtasks.testing.SharedClone`).

Prints both per-test means and the ratio in one run. Uses ``--url`` (a
maintenance database URL) or starts a throwaway server through dbtasks.server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from dbtasks import migrations  # noqa: E402
from dbtasks.config import load_settings  # noqa: E402
from dbtasks.database import create_database, drop_database, make_engine, prepare_scratch, scratch_name  # noqa: E402
from dbtasks.testing import SharedClone, clone, given_or_throwaway, rolled_back  # noqa: E402

INSERT = sa.text("insert into tags (name) values (:name)")
COUNT = sa.text("select count(*) from tags")


def work(session: Session, n: int) -> None:
    """What a small test does: write through code that commits, then read back."""
    session.execute(INSERT, {"name": f"tag-{n}"})
    session.commit()
    assert session.execute(COUNT).scalar() == 1


def per_clone(server: sa.URL, template: sa.URL, n: int) -> float:
    start = time.perf_counter()
    with clone(server, template) as url:
        engine = make_engine(url)
        try:
            with engine.connect() as conn, Session(bind=conn) as session:
                work(session, n)
        finally:
            engine.dispose()
    return time.perf_counter() - start


def per_transaction(shared: SharedClone, n: int) -> float:
    start = time.perf_counter()
    with rolled_back(shared.connection) as conn:
        with Session(bind=conn, join_transaction_mode="create_savepoint") as session:
            work(session, n)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="maintenance database URL of a server to use (default: a throwaway server)")
    parser.add_argument("--clones", type=int, default=20, help="tests measured with a clone each (default 20)")
    parser.add_argument("--transactions", type=int, default=1000, help="tests measured with a transaction each (default 1000)")
    args = parser.parse_args(argv)

    with given_or_throwaway(args.url, "--url") as server:
        settings = load_settings(project_dir=REPO)
        name = scratch_name("dbtasks_bench_template")
        template = create_database(server, name)
        try:
            prepare_scratch(settings, template)
            migrations.upgrade_scratch(settings, template)
            per_clone(server, template, -1)  # warm-up: first clone reads the template from disk
            clones = [per_clone(server, template, n) for n in range(args.clones)]
            shared = SharedClone(server, template)
            try:
                per_transaction(shared, -1)
                transactions = [per_transaction(shared, n) for n in range(args.transactions)]
            finally:
                shared.close()
        finally:
            drop_database(server, name)

    clone_mean, txn_mean = statistics.mean(clones), statistics.mean(transactions)
    print(f"template clone per test (dbtasks_database):         {clone_mean * 1000:8.2f} ms  (median {statistics.median(clones) * 1000:.2f} ms, {len(clones)} tests)")
    print(f"rolled-back transaction per test (dbtasks_session): {txn_mean * 1000:8.3f} ms  (median {statistics.median(transactions) * 1000:.3f} ms, {len(transactions)} tests)")
    print(f"ratio: the transaction fixture is {clone_mean / txn_mean:.0f}x faster per test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
