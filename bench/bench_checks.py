"""`dbtasks check` against pytest-alembic's built-in tests, on the same projects, as a ratio.

pytest-alembic side: test_single_head_revision, test_upgrade,
test_model_definitions_match_ddl and test_up_down_consistency, each on a fresh
empty database as its fixtures give them (the pytest plugin is disabled under
pytest 9, so its Python API is called directly). dbtasks side: the whole
``check`` (heads, lint with squawk, roundtrip with schema comparison at every
step, drift, rehearse) with every revision in scope; the docs check is left
out because pytest-alembic has no equivalent.

Projects: the kit's example application and a generated chain of N revisions
(default 200). Run:

    .venv/bin/python bench/bench_checks.py [--revisions 200] [--repeat 1]

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

ENV_PY = '''
from alembic import context
from sqlalchemy import engine_from_config, pool
from sqlalchemy.engine import Engine

from models import metadata

config = context.config


def _run(connection):
    context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if isinstance(connection, Engine):  # pytest-alembic passes an engine
        with connection.connect() as conn:
            _run(conn)
            conn.commit()
    elif connection is not None:
        _run(connection)
    else:
        engine = engine_from_config(config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool)
        with engine.connect() as conn:
            _run(conn)
            conn.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
'''


def generate_chain(root: Path, count: int) -> Path:
    """An Alembic project of ``count`` revisions, each adding a table (every 5th an index)."""
    (root / "migrations" / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\nprepend_sys_path = %(here)s\npath_separator = os\n"
        "sqlalchemy.url = postgresql://placeholder/placeholder\n"
    )
    (root / "migrations" / "env.py").write_text(ENV_PY)
    models = ["import sqlalchemy as sa", "", "metadata = sa.MetaData()", ""]
    previous = None
    for i in range(count):
        rev = f"{i + 1:012x}"
        table = f"t_{i:04d}"
        parent = f"t_{i - 1:04d}" if i else None
        cols = ['sa.Column("id", sa.BigInteger(), primary_key=True)', 'sa.Column("name", sa.Text(), nullable=False)']
        if parent:
            cols.append(f'sa.Column("parent_id", sa.BigInteger(), sa.ForeignKey("{parent}.id", name="fk_{table}_parent"), nullable=True)')
        index = i % 5 == 0 and parent
        models.append(f'sa.Table("{table}", metadata, {", ".join(cols)}' + (f', sa.Index("ix_{table}_parent_id", "parent_id")' if index else "") + ")")
        up = f'op.create_table("{table}", {", ".join(cols)})'
        if index:
            up += f'\n    # dbtasks: allow require-concurrent-index-creation: the table is created here\n    op.create_index("ix_{table}_parent_id", "{table}", ["parent_id"])'
        down = (f'op.drop_index("ix_{table}_parent_id", table_name="{table}")\n    ' if index else "") + f'op.drop_table("{table}")'
        text = (
            f'"""add {table}\n\nRevision ID: {rev}\nRevises: {previous or ""}\n"""\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {rev!r}\ndown_revision = {previous!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {up}\n\n\ndef downgrade():\n    {down}\n"
        )
        (root / "migrations" / "versions" / f"{rev}_add_{table}.py").write_text(text)
        previous = rev
    (root / "models.py").write_text("\n".join(models) + "\n")
    return root / "alembic.ini"


def server():
    from dbtasks.testing import given_or_throwaway

    return given_or_throwaway(os.environ.get("TEST_DATABASE_URL"))


def run_pytest_alembic(settings) -> float:
    """The four pytest-alembic built-in tests, each on a fresh empty database."""
    import pytest_alembic
    from pytest_alembic.config import Config as PAConfig
    from pytest_alembic.tests import default as builtin

    from dbtasks.database import make_engine, scratch
    from dbtasks.migrations import alembic_config

    started = time.perf_counter()
    for test in (builtin.test_single_head_revision, builtin.test_upgrade, builtin.test_model_definitions_match_ddl, builtin.test_up_down_consistency):
        with scratch(settings, prefix="bench_pa") as url:
            engine = make_engine(url)
            try:
                config = alembic_config(settings.with_(database_url=url.render_as_string(hide_password=False)), quiet=True)
                with pytest_alembic.runner(PAConfig(alembic_config=config), engine) as runner:
                    # The kit's env.py expects a Connection in attributes, not the Engine
                    # pytest-alembic puts there; without it env.py connects to the same URL.
                    if "alembic/env.py" in str(Path(config.get_main_option("script_location")) / "env.py"):
                        runner.command_executor.alembic_config.attributes.pop("connection", None)
                    test(runner)
            finally:
                engine.dispose()
    return time.perf_counter() - started


def run_dbtasks(settings) -> tuple[float, list]:
    from dbtasks.checks.runner import registry, run_checks

    started = time.perf_counter()
    only = tuple(c.name for c in registry() if c.name != "docs")
    results = run_checks(settings.with_(all_revisions=True), only)
    return time.perf_counter() - started, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--revisions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    from dbtasks.config import load_settings

    rows = []
    with server() as url, tempfile.TemporaryDirectory(prefix="dbtasks-bench-") as tmp:
        server_url = url.render_as_string(hide_password=False)
        projects = [("example app (1 revision)", REPO / "alembic.ini", REPO)]
        if args.revisions:  # --revisions 0: the example application only
            chain_ini = generate_chain(Path(tmp) / "chain", args.revisions)
            projects.append((f"chain of {args.revisions} revisions", chain_ini, chain_ini.parent))
        for name, ini, project_dir in projects:
            # The benchmark's server is a development server: scratch databases may go there.
            settings = load_settings({"database_url": server_url, "alembic_ini": str(ini), "dev_databases": [f"{url.host}:{url.port}"]}, project_dir=project_dir)
            pa_times, db_times = [], []
            for _ in range(args.repeat):
                pa_times.append(run_pytest_alembic(settings))
                seconds, results = run_dbtasks(settings)
                db_times.append(seconds)
                failed = [r.check for r in results if not r.ok and not r.skipped]  # a project without a ledger skips that check
                if failed:
                    raise SystemExit(f"dbtasks check failed on {name}: {failed}: {[f.message for r in results for f in r.errors][:3]}")
            pa, db = min(pa_times), min(db_times)
            rows.append((name, pa, db, ", ".join(f"{r.check} {r.seconds:.1f}s" for r in results)))
    print(f"{'project':<28} {'pytest-alembic':>14} {'dbtasks check':>14} {'ratio':>7}")
    for name, pa, db, detail in rows:
        print(f"{name:<28} {pa:>13.2f}s {db:>13.2f}s {pa / db:>6.2f}x")
        print(f"  dbtasks: {detail}")
    print("ratio = pytest-alembic seconds / dbtasks seconds (above 1: dbtasks is faster)")


if __name__ == "__main__":
    main()
