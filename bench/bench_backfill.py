"""Backfill benchmark: the batched helper against a row-by-row ORM loop and one set-based UPDATE.

    .venv/bin/python bench/bench_backfill.py                 # 1,000,000 rows (the issue's size)
    .venv/bin/python bench/bench_backfill.py --rows 200000 --orm-rows 50000

Each method runs on a freshly generated copy of the same table and adds 1 to
``value`` of every row. The ORM loop is the pattern docs show: select every row
still to do, change each through the session (one UPDATE per row), commit once.
When ``--orm-rows`` is smaller than ``--rows`` the ORM loop runs on that many
rows and its time is scaled linearly to the full size (said in the output).

Prints the times and the ratios in one run. Uses ``--url`` (a maintenance
database URL) or starts a throwaway server through dbtasks.server.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column  # noqa: E402

from dbtasks.config import load_settings  # noqa: E402
from dbtasks.data.backfill import batched_update  # noqa: E402
from dbtasks.database import create_database, drop_database, make_engine  # noqa: E402


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "bench_items"
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    value: Mapped[int]
    label: Mapped[str]


def fresh_table(engine: sa.Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("drop table if exists bench_items"))
        conn.execute(sa.text("create table bench_items (id bigint primary key, value int not null, label text not null)"))
        conn.execute(sa.text("insert into bench_items select g, 0, md5(g::text) from generate_series(1, :n) g"), {"n": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("vacuum analyze bench_items"))


def check(engine: sa.Engine, rows: int) -> None:
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text("select value, count(*) from bench_items group by value")).all())
    assert got == {1: rows}, got


def set_based(engine: sa.Engine) -> float:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text("update bench_items set value = value + 1"))
    return time.perf_counter() - started


def orm_loop(engine: sa.Engine) -> float:
    started = time.perf_counter()
    with Session(engine) as session:
        items = session.scalars(sa.select(Item).where(Item.value == 0)).all()
        for item in items:
            item.value = item.value + 1
        session.commit()
    return time.perf_counter() - started


def helper(url: sa.URL, batch_size: int) -> tuple[float, float, int]:
    settings = load_settings({"database_url": url.render_as_string(hide_password=False)}, environ={})
    started = time.perf_counter()
    result = batched_update(settings, "bench_items", "value = value + 1", name="bench", batch_size=batch_size, restart=True)
    return time.perf_counter() - started, result.max_batch_seconds, result.batches


def server(url: str | None):
    from dbtasks.testing import given_or_throwaway

    return given_or_throwaway(url, "--url")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--orm-rows", type=int, default=None, help="rows for the ORM loop (default: --rows)")
    parser.add_argument("--batch-size", type=int, default=1000, help="first batch size of the helper (it adapts)")
    parser.add_argument("--url", help="maintenance database URL of a server to use")
    args = parser.parse_args()
    orm_rows = args.orm_rows or args.rows

    with server(args.url) as admin:
        db = create_database(admin, "dbtasks_bench_backfill")
        engine = make_engine(db)
        try:
            fresh_table(engine, args.rows)
            t_set = set_based(engine)
            check(engine, args.rows)

            fresh_table(engine, args.rows)
            t_helper, slowest, batches = helper(db, args.batch_size)
            check(engine, args.rows)

            fresh_table(engine, orm_rows)
            t_orm_measured = orm_loop(engine)
            check(engine, orm_rows)
            t_orm = t_orm_measured * args.rows / orm_rows
        finally:
            engine.dispose()
            drop_database(admin, db.database)

    print(f"rows: {args.rows:,}")
    print(f"set-based UPDATE (the limit):  {t_set:8.2f} s")
    print(f"batched helper:                {t_helper:8.2f} s  ({batches} batches, slowest batch {slowest:.2f} s)")
    scaled = "" if orm_rows == args.rows else f"  (measured {t_orm_measured:.2f} s on {orm_rows:,} rows, scaled linearly)"
    print(f"row-by-row ORM loop:           {t_orm:8.2f} s{scaled}")
    print(f"ratio ORM loop / helper:       {t_orm / t_helper:8.1f}x   (aim: >= 50x)")
    print(f"ratio helper / set-based:      {t_helper / t_set:8.2f}x   (aim: <= 1.5x)")
    print(f"slowest batch holds its locks: {slowest:8.2f} s   (aim: about 1 s or less)")


if __name__ == "__main__":
    main()
