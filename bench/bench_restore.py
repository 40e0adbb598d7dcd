"""Restore benchmark: `restore-db` into the kit's local cluster against `psql < plain.sql` into a cluster on PostgreSQL's defaults.

    .venv/bin/python bench/bench_restore.py                  # ~0.3 GB database (0.2 GB of rows)
    .venv/bin/python bench/bench_restore.py --size-gb 1      # bigger, slower
    .venv/bin/python bench/bench_restore.py --variants       # also time pg_restore flag variants

It starts two throwaway clusters with the same binaries:

- the kit's local cluster (``dbtasks.server.LocalServer``, with its tuning for
  a disposable copy: ``wal_level = minimal``, ``synchronous_commit = off``, a
  large ``maintenance_work_mem`` and ``max_wal_size``; fsync stays on);
- a cluster on PostgreSQL's default settings (initdb and nothing else), which
  is where a developer following the usual instructions restores.

It generates a database of several tables with indexes (``--size-gb`` of table
data) in the first, dumps it as plain SQL and with :func:`dbtasks.data.dump.dump_db`
twice (as dump-and-restore dumps: directory format, uncompressed, parallel; and
as dump-db dumps by default: custom format, gzip), then times, in one run:

- ``dropdb`` + ``createdb`` + ``psql < plain.sql`` into the default cluster,
  replacing a database that holds the same data (what a developer refreshing a
  local copy by hand does);
- :func:`dbtasks.data.restore.restore_db` with ``jobs=N`` of each dbtasks dump
  into the kit's cluster (scratch database, then the swap), replacing a
  database that holds the same data;
  interleaved ``--repeat`` times, the best of each reported;
- ``dump-and-restore MODE=full`` with and without masking rules (email and name
  of every table: every row rewritten), to tell what masking costs;
- with ``--variants``: bare ``pg_restore`` flag variants into both clusters,
  to tell what the settings and what the flags give.

Prints the times and the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from dbtasks.clients import client_environment, find_client  # noqa: E402
from dbtasks.config import load_settings  # noqa: E402
from dbtasks.data.dump import dump_db  # noqa: E402
from dbtasks.data.restore import dump_and_restore, restore_db, working_dump_settings  # noqa: E402
from dbtasks.database import create_database, drop_database, make_engine, server_version  # noqa: E402
from dbtasks.server import LocalServer  # noqa: E402
from dbtasks.testing import free_port  # noqa: E402

TABLES = 8


class DefaultServer(LocalServer):
    """A local cluster on PostgreSQL's defaults: no tuning file."""

    def tuning(self) -> dict[str, str]:
        return {}


@contextlib.contextmanager
def cluster(kind: type[LocalServer]) -> Iterator[sa.URL]:
    root = Path(tempfile.mkdtemp(prefix="dbtasks-bench-pg-"))
    root.chmod(0o755)  # the server may run as another OS user (we may be root)
    settings = load_settings(
        {"db_server": "local", "pg_data": str(root / "pgdata"), "pg_port": free_port(), "db_name": "postgres"},
        project_dir=root,
        environ={k: v for k, v in os.environ.items() if k == "PG_BIN"},
    )
    server = kind(settings)
    try:
        server.start()
        yield settings.url
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def generate(url: sa.URL, size_gb: float) -> int:
    """Fill ``url`` with TABLES tables of ~size_gb of table data in total; return the database size in bytes."""
    rows_per_table = int(size_gb * 1024**3 / TABLES / 200)  # ~200 bytes per row on disk
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            for i in range(TABLES):
                conn.execute(sa.text(
                    f"create table t{i} (id bigint primary key, ref bigint, email text, name text, body text, at timestamptz)"
                ))
                conn.execute(sa.text(
                    f"insert into t{i} select g, (g * 7) % 100000, 'user' || g || '@example.com', 'Name ' || (g % 5000), "
                    "repeat(md5(g::text), 2), timestamptz '2020-01-01' + g * interval '1 second' from generate_series(1, :n) g"
                ), {"n": rows_per_table})
                conn.execute(sa.text(f"create index on t{i} (ref)"))
                conn.execute(sa.text(f"create index on t{i} (email)"))
        with engine.connect() as conn:
            return int(conn.execute(sa.text("select pg_database_size(current_database())")).scalar())
    finally:
        engine.dispose()


def timed(args, env, stdin=None) -> float:
    started = time.perf_counter()
    subprocess.run(args, env=env, stdin=stdin, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def fresh(admin: sa.URL, name: str) -> sa.URL:
    drop_database(admin, name)
    return create_database(admin, name)


def masked_copy_cost(src: sa.URL, target: sa.URL, repeat: int) -> tuple[float, float]:
    """Best seconds of ``dump-and-restore MODE=full`` from ``src`` into ``target``, without and with masking rules
    (email and name of every table: every row rewritten); interleaved ``repeat`` times."""
    rules = {f"t{i}.{col}": col for i in range(TABLES) for col in ("email", "name")}
    environ = {"BENCHSRC_DATABASE_URL": src.render_as_string(hide_password=False)}
    os.environ.update(environ)  # the source environment is read as <ENV>_DATABASE_URL
    base = {
        "database_url": target.render_as_string(hide_password=False),
        "dump_dir": tempfile.mkdtemp(prefix="dbtasks-bench-dumps-"),
        "dev_databases": [f"{target.host}:{target.port}"],  # a throwaway cluster: a development server
    }
    plain = load_settings(base, environ=environ)
    masked = load_settings({**base, "masking": rules, "masking_seed": "bench"}, environ=environ)
    runs: dict[bool, list[float]] = {False: [], True: []}
    try:
        for _ in range(repeat):
            for with_rules, settings in ((False, plain), (True, masked)):
                started = time.perf_counter()
                dump_and_restore(settings, "benchsrc", mode="full", keep_dump=False)
                runs[with_rules].append(time.perf_counter() - started)
    finally:
        shutil.rmtree(base["dump_dir"], ignore_errors=True)
    return min(runs[False]), min(runs[True])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=0.2)
    parser.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each; the best is reported")
    parser.add_argument("--variants", action="store_true", help="also time pg_restore flag variants into both clusters")
    parser.add_argument("--workdir", help="where the dumps go (default: a temporary directory)")
    args = parser.parse_args()

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dbtasks-bench-"))
    variants: list[tuple[str, float]] = []
    with cluster(LocalServer) as kit, cluster(DefaultServer) as default:
        major = server_version(kit) // 10000
        pg_dump = find_client("pg_dump", min_major=major, prefer=major).path
        pg_restore = find_client("pg_restore", min_major=major, prefer=major).path
        psql = find_client("psql", min_major=0, prefer=major).path
        try:
            src = fresh(kit, "bench_src")
            t0 = time.perf_counter()
            size = generate(src, args.size_gb)
            print(f"generated {size / 1024**2:.0f} MB ({TABLES} tables, 2 indexes each) in {time.perf_counter() - t0:.0f} s", flush=True)
            env = client_environment(src)
            plain = work / "plain.sql"
            timed([pg_dump, "-Fp", "-f", str(plain)], env)
            # The kit's own dumps: what dump-and-restore writes (directory, uncompressed,
            # parallel) and what dump-db writes by default (custom format, gzip).
            src_settings = load_settings({"database_url": src.render_as_string(hide_password=False), "dump_jobs": args.jobs}, environ={})
            dumps = {}
            for label, chosen in (("dump-and-restore's dump", working_dump_settings(src_settings)), ("dump-db's default dump", src_settings)):
                started = time.perf_counter()
                out = work / f"dump-{len(dumps)}"
                dump_db(chosen, output=out)
                dumps[label] = (out, time.perf_counter() - started, chosen.dump_format, chosen.dump_compress)
            t_plain_dump = timed([pg_dump, "-Fp", "-f", str(work / "again.sql")], env)
            (work / "again.sql").unlink()
            sizes = {label: disk_mb(path) for label, (path, *_rest) in dumps.items()}
            plain_mb = plain.stat().st_size / 1024**2

            # Both sides replace an existing database holding the same data, as a
            # developer refreshing a local copy does: by hand that is dropdb, createdb
            # and psql < plain.sql; restore-db builds a scratch database and swaps it in.
            target = fresh(default, "bench_psql")
            with plain.open("rb") as fh:
                timed([psql, "-q", "-v", "ON_ERROR_STOP=1", "-X", "-d", "bench_psql"], client_environment(target), stdin=fh)
            settings = load_settings({"database_url": kit.set(database="bench_app").render_as_string(hide_password=False)}, environ={})
            fresh(kit, "bench_app")
            first = next(iter(dumps.values()))[0]
            restore_db(settings, first, jobs=args.jobs, confirm="bench_app")  # a throwaway server, not the project's own

            # Interleaved repeats, best of each: the machine may be shared, and the
            # fastest run is the one least disturbed by other work.
            psql_runs: list[float] = []
            ours_runs: dict[str, list[float]] = {label: [] for label in dumps}
            for _ in range(args.repeat):
                started = time.perf_counter()
                target = fresh(default, "bench_psql")  # drop the old copy, create an empty one
                with plain.open("rb") as fh:
                    timed([psql, "-q", "-v", "ON_ERROR_STOP=1", "-X", "-d", "bench_psql"], client_environment(target), stdin=fh)
                psql_runs.append(time.perf_counter() - started)
                line = f"dropdb + createdb + psql < plain.sql (default settings): {psql_runs[-1]:.1f} s"
                for label, (path, *_rest) in dumps.items():
                    started = time.perf_counter()
                    restore_db(settings, path, jobs=args.jobs, confirm="bench_app")
                    ours_runs[label].append(time.perf_counter() - started)
                    line += f"; restore-db of {label}: {ours_runs[label][-1]:.1f} s"
                print(line, flush=True)
            t_psql = min(psql_runs)
            best = {label: min(runs) for label, runs in ours_runs.items()}
            t_copy, t_masked_copy = masked_copy_cost(src, settings.url, args.repeat)
            drop_database(kit, "bench_app")
            drop_database(kit, "bench_src")
            drop_database(default, "bench_psql")

            if args.variants:
                directory = dumps["dump-and-restore's dump"][0]
                flags = {
                    f"pg_restore -j {args.jobs}": ["-j", str(args.jobs)],
                    "pg_restore --single-transaction": ["--single-transaction"],
                    "pg_restore (one job)": [],
                }
                runs: dict[str, list[float]] = {}
                for _ in range(args.repeat):
                    for where, admin in (("kit", kit), ("default", default)):
                        for label, extra in flags.items():
                            url = fresh(admin, "bench_variant")
                            t = timed([pg_restore, *extra, "--exit-on-error", "--no-owner", "--no-privileges", "-d", "bench_variant", str(directory)], client_environment(url))
                            drop_database(admin, "bench_variant")
                            runs.setdefault(f"{label} into the {where} cluster", []).append(t)
                variants = [(label, min(ts)) for label, ts in runs.items()]
        finally:
            if not args.workdir:
                shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"data: {size / 1024**2:.0f} MB database ({TABLES} tables, 2 indexes each), plain.sql {plain_mb:.0f} MB; jobs: {args.jobs}; best of {args.repeat}")
    print(f"pg_dump -Fp (plain.sql):                          {t_plain_dump:8.1f} s")
    for label, (path, seconds, fmt, level) in dumps.items():
        print(f"dump-db, {fmt} format, compress {level} ({label}): {seconds:6.1f} s, {sizes[label]:.0f} MB")
    print(f"dropdb + createdb + psql < plain.sql, default settings: {t_psql:8.1f} s")
    for label, t in best.items():
        print(f"restore-db -j {args.jobs} of {label}, kit cluster: {t:8.1f} s   ratio {t_psql / t:5.2f}x")
    for label, t in variants:
        print(f"  {label + ':':<48} {t:8.1f} s")
    headline = best["dump-and-restore's dump"]
    print(f"ratio psql / restore-db (dump-and-restore's dump): {t_psql / headline:5.2f}x  (aim: >= 1.8x)")
    print(f"dump-and-restore MODE=full, no masking rules:        {t_copy:8.1f} s")
    print(f"dump-and-restore MODE=full, email+name of every row masked: {t_masked_copy:8.1f} s  (masking adds {t_masked_copy - t_copy:.1f} s, {(t_masked_copy - t_copy) / headline:.1f}x the restore-db time)")


def disk_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1024**2


if __name__ == "__main__":
    main()
