"""Restore benchmark: dbtasks restore-db against `psql < plain.sql` and against `pg_restore -j` directly.

    .venv/bin/python bench/bench_restore.py                  # a generated database of >= 1 GB
    .venv/bin/python bench/bench_restore.py --size-gb 0.25   # smaller, faster

It generates a database of several tables with indexes (``--size-gb`` of table
data), dumps it once as plain SQL and once in directory format, then times:

- ``psql < plain.sql`` into an empty database (what pages tell you to do);
- ``pg_restore -j N`` of the directory dump into an empty database (the tool itself);
- :func:`dbtasks.data.restore.restore_db` with ``jobs=N`` (scratch database,
  then the swap), replacing an existing database.

Prints the times and the ratios in one run. Uses ``--url`` (a maintenance
database URL) or starts a throwaway server through dbtasks.server.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from dbtasks.config import load_settings  # noqa: E402
from dbtasks.data.restore import restore_db  # noqa: E402
from dbtasks.clients import client_environment, find_client  # noqa: E402
from dbtasks.database import create_database, drop_database, make_engine, server_version  # noqa: E402

TABLES = 8


def generate(url: sa.URL, size_gb: float) -> int:
    """Fill ``url`` with TABLES tables of ~size_gb in total; return the database size in bytes."""
    rows_per_table = int(size_gb * 1024**3 / TABLES / 160)  # ~160 bytes per row on disk
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(TABLES):
                conn.execute(sa.text(
                    f"create table t{i} (id bigint primary key, ref bigint, body text, at timestamptz)"
                ))
                conn.execute(sa.text(
                    f"insert into t{i} select g, (g * 7) % 100000, repeat(md5(g::text), 2), "
                    "timestamptz '2020-01-01' + g * interval '1 second' from generate_series(1, :n) g"
                ), {"n": rows_per_table})
                conn.execute(sa.text(f"create index on t{i} (ref)"))
        with engine.connect() as conn:
            return int(conn.execute(sa.text("select pg_database_size(current_database())")).scalar())
    finally:
        engine.dispose()


def timed(args, env, stdin=None) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, stdin=stdin, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def server(url: str | None):
    from dbtasks.testing import given_or_throwaway

    return given_or_throwaway(url, "--url")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--url", help="maintenance database URL of a server to use")
    parser.add_argument("--workdir", help="where the dumps go (default: a temporary directory)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dbtasks-bench-"))
    with server(args.url) as admin:
        major = server_version(admin) // 10000
        pg_dump = find_client("pg_dump", min_major=major, prefer=major).path
        pg_restore = find_client("pg_restore", min_major=major, prefer=major).path
        psql = find_client("psql", min_major=0, prefer=major).path
        names = ["dbtasks_bench_src", "dbtasks_bench_psql", "dbtasks_bench_pgr", "dbtasks_bench_app"]
        for name in names:
            drop_database(admin, name)
        try:
            src = create_database(admin, names[0])
            t0 = time.perf_counter()
            size = generate(src, args.size_gb)
            print(f"generated {size / 1024**3:.2f} GB in {time.perf_counter() - t0:.0f} s")
            env = client_environment(src)
            plain, directory = work / "plain.sql", work / "dump.dir"
            timed([pg_dump, "-Fp", "-f", str(plain)], env)
            timed([pg_dump, "-Fd", "-j", str(args.jobs), "-f", str(directory)], env)

            create_database(admin, names[1])
            with plain.open("rb") as fh:
                t_psql = timed([psql, "-q", "-v", "ON_ERROR_STOP=1", "-X", "-d", names[1]], client_environment(admin.set(database=names[1])), stdin=fh)

            create_database(admin, names[2])
            t_pgr = timed([pg_restore, "-j", str(args.jobs), "--no-owner", "--no-privileges", "-d", names[2], str(directory)], client_environment(admin.set(database=names[2])))

            app = create_database(admin, names[3])  # an existing database that the restore replaces
            settings = load_settings({"database_url": app.render_as_string(hide_password=False)}, environ={})
            marks: dict[str, float] = {}

            def progress(p) -> None:
                marks.setdefault(f"{p.stage} start", time.perf_counter())
                if p.total is not None and p.done >= p.total:
                    marks[f"{p.stage} end"] = time.perf_counter()

            started = time.perf_counter()
            restore_db(settings, directory, jobs=args.jobs, progress=progress)
            t_ours = time.perf_counter() - started
            t_inner = marks.get("restore end", started) - marks.get("restore start", started)
        finally:
            for name in names:
                drop_database(admin, name)
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)

    print(f"jobs: {args.jobs}")
    print(f"psql < plain.sql:                 {t_psql:8.1f} s")
    print(f"pg_restore -j {args.jobs} (directory):      {t_pgr:8.1f} s")
    print(f"dbtasks restore-db -j {args.jobs}:          {t_ours:8.1f} s  (pg_restore inside it {t_inner:.1f} s; checks, scratch database, swap, drop {t_ours - t_inner:.1f} s)")
    print(f"ratio psql / dbtasks:             {t_psql / t_ours:8.2f}x  (aim: >= 1.5x)")
    print(f"ratio dbtasks / pg_restore -j:    {t_ours / t_pgr:8.2f}x  (aim: <= 1.1x)")


if __name__ == "__main__":
    main()
