"""Generated Alembic histories of any length, for the history-at-scale tests and benchmarks.

:func:`generate_history` writes a small Alembic project (alembic.ini,
migrations/env.py, migrations/versions/, models.py) whose revisions form one
chain. Two shapes:

- add-only (``churn=False``): each revision creates a table ``t_NNNN`` with a
  foreign key to the previous one; every 5th also an index. The schema grows
  with the history.
- churn (``churn=True``): the first revision also creates what autogenerate
  cannot see (an enum, a sequence owned by a column, a view, a function, a
  trigger, comments); revisions 1-50 create 50 tables; every later revision
  either adds a column with a default and an index to one table, or drops the
  ones the previous round added, so the schema stays small while the history
  grows, as real histories do.

models.py describes the schema at head, so drift checks pass on both shapes.
Revision ids are ``000000000001``, ``000000000002``, ...: ``rev_id(n)`` is the
n-th (1-based).
"""

from __future__ import annotations

from pathlib import Path

TABLES = 50  # churn mode: tables created before the churn starts

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
    if isinstance(connection, Engine):
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

ALLOW_INDEX = "# dbtasks: allow require-concurrent-index-creation: generated history\n    "

# Churn mode, first revision: objects autogenerate does not see.
EXTRAS_UP = '''op.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
    op.execute("CREATE SEQUENCE ticket_seq START 100 INCREMENT 5")
    op.execute("COMMENT ON TYPE mood IS 'how it went'")
    op.execute(
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.name := trim(NEW.name); RETURN NEW; END $$"
    )'''
EXTRAS_DOWN = '''op.execute("DROP FUNCTION touch()")
    op.execute("DROP SEQUENCE ticket_seq")
    op.execute("DROP TYPE mood")'''

# Churn mode, the revision creating t_0000 also creates objects that depend on it.
FIRST_TABLE_UP = '''op.execute("ALTER TABLE t_0000 ADD COLUMN mood mood NOT NULL DEFAULT 'ok'")
    op.execute("ALTER SEQUENCE ticket_seq OWNED BY t_0000.id")
    op.execute("COMMENT ON TABLE t_0000 IS 'the first table'")
    op.execute("COMMENT ON COLUMN t_0000.name IS 'trimmed by a trigger'")
    op.execute("CREATE TRIGGER t_0000_touch BEFORE INSERT OR UPDATE ON t_0000 FOR EACH ROW EXECUTE FUNCTION touch()")
    op.execute("CREATE VIEW happy_t_0000 AS SELECT id, name FROM t_0000 WHERE mood = 'happy'")'''
FIRST_TABLE_DOWN = '''op.execute("DROP VIEW happy_t_0000")
    op.execute("DROP TRIGGER t_0000_touch ON t_0000")
    op.execute("ALTER SEQUENCE ticket_seq OWNED BY NONE")
    '''


def rev_id(n: int) -> str:
    """The id of the n-th generated revision (1-based)."""
    return f"{n:012x}"


def _table(i: int) -> str:
    return f"t_{i:04d}"


def _create(i: int, parent: str | None, index: bool) -> tuple[str, str, list[str]]:
    """(upgrade, downgrade, model column lines) of the revision creating table ``i``."""
    table = _table(i)
    cols = ['sa.Column("id", sa.BigInteger(), primary_key=True)', 'sa.Column("name", sa.Text(), nullable=False)']
    if parent:
        cols.append(f'sa.Column("parent_id", sa.BigInteger(), sa.ForeignKey("{parent}.id", name="fk_{table}_parent"), nullable=True)')
    up = f'op.create_table("{table}", {", ".join(cols)})'
    down = f'op.drop_table("{table}")'
    if index:
        up += f'\n    {ALLOW_INDEX}op.create_index("ix_{table}_parent_id", "{table}", ["parent_id"])'
        down = f'op.drop_index("ix_{table}_parent_id", table_name="{table}")\n    ' + down
        cols = cols + [f'sa.Index("ix_{table}_parent_id", "parent_id")']
    return up, down, cols


def _steps(count: int, churn: bool) -> list[tuple[str, str, str]]:
    """(message, upgrade body, downgrade body) per revision, and the models at head via _models."""
    steps = []
    if not churn:
        for i in range(count):
            parent = _table(i - 1) if i else None
            up, down, _ = _create(i, parent, bool(i % 5 == 0 and parent))
            steps.append((f"add {_table(i)}", up, down))
        return steps
    for n in range(count):
        if n < TABLES:
            parent = _table(n - 1) if n else None
            up, down, _ = _create(n, parent, bool(n % 5 == 0 and parent))
            if n == 0:
                up, down = EXTRAS_UP + "\n    " + up + "\n    " + FIRST_TABLE_UP, FIRST_TABLE_DOWN + down + "\n    " + EXTRAS_DOWN
            steps.append((f"add {_table(n)}", up, down))
            continue
        j = n - TABLES
        table, rnd = _table(j % TABLES), j // TABLES
        if rnd % 2 == 0:
            col = f"c{rnd}"
            up = (
                f'op.add_column("{table}", sa.Column("{col}", sa.Integer(), server_default="{rnd}", nullable=True))\n'
                f'    {ALLOW_INDEX}op.create_index("ix_{table}_{col}", "{table}", ["{col}"])'
            )
            down = f'op.drop_index("ix_{table}_{col}", table_name="{table}")\n    op.drop_column("{table}", "{col}")'
            steps.append((f"add {table}.{col}", up, down))
        else:
            col = f"c{rnd - 1}"
            up = f'op.drop_index("ix_{table}_{col}", table_name="{table}")\n    op.drop_column("{table}", "{col}")'
            down = (
                f'op.add_column("{table}", sa.Column("{col}", sa.Integer(), server_default="{rnd - 1}", nullable=True))\n'
                f'    {ALLOW_INDEX}op.create_index("ix_{table}_{col}", "{table}", ["{col}"])'
            )
            steps.append((f"drop {table}.{col}", up, down))
    return steps


def _models(count: int, churn: bool) -> str:
    """models.py: the tables at head."""
    lines = ["import sqlalchemy as sa", "from sqlalchemy.dialects import postgresql", "", "metadata = sa.MetaData()", ""]
    tables = min(count, TABLES) if churn else count
    extra: dict[int, int] = {}  # table -> round of its extra column at head
    if churn:
        for n in range(TABLES, count):
            j = n - TABLES
            if (j // TABLES) % 2 == 0:
                extra[j % TABLES] = j // TABLES
            else:
                extra.pop(j % TABLES, None)
    for i in range(tables):
        parent = _table(i - 1) if i else None
        _, _, cols = _create(i, parent, bool(i % 5 == 0 and parent))
        if churn and i == 0:
            cols[1] = 'sa.Column("name", sa.Text(), nullable=False, comment="trimmed by a trigger")'
            cols = cols + [
                "sa.Column(\"mood\", postgresql.ENUM(\"sad\", \"ok\", \"happy\", name=\"mood\", create_type=False), "
                "nullable=False, server_default=\"ok\")"
            ]
        if i in extra:
            col = f"c{extra[i]}"
            cols = cols + [f'sa.Column("{col}", sa.Integer(), server_default="{extra[i]}", nullable=True)', f'sa.Index("ix_{_table(i)}_{col}", "{col}")']
        kwargs = ', comment="the first table"' if churn and i == 0 else ""
        lines.append(f'sa.Table("{_table(i)}", metadata, {", ".join(cols)}{kwargs})')
    return "\n".join(lines) + "\n"


def generate_history(root: Path, count: int, churn: bool = False) -> Path:
    """Write an Alembic project of ``count`` chained revisions under ``root``; return its alembic.ini."""
    versions = root / "migrations" / "versions"
    versions.mkdir(parents=True)
    (root / "alembic.ini").write_text(
        "[alembic]\nscript_location = %(here)s/migrations\nprepend_sys_path = %(here)s\npath_separator = os\n"
        "sqlalchemy.url = postgresql://placeholder/placeholder\n"
    )
    (root / "migrations" / "env.py").write_text(ENV_PY)
    (root / "migrations" / "script.py.mako").write_text(SCRIPT_MAKO)
    previous = None
    for n, (message, up, down) in enumerate(_steps(count, churn), start=1):
        rev = rev_id(n)
        text = (
            f'"""{message}\n\nRevision ID: {rev}\nRevises: {previous or ""}\n"""\n'
            "import sqlalchemy as sa\nfrom alembic import op\n\n"
            f"revision = {rev!r}\ndown_revision = {previous!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade():\n    {up}\n\n\ndef downgrade():\n    {down}\n"
        )
        (versions / f"{rev}_{message.replace(' ', '_').replace('.', '_')}.py").write_text(text)
        previous = rev
    (root / "models.py").write_text(_models(count, churn))
    return root / "alembic.ini"


SCRIPT_MAKO = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
"""
import sqlalchemy as sa
from alembic import op
${imports if imports else ""}
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade():
    ${upgrades if upgrades else "pass"}


def downgrade():
    ${downgrades if downgrades else "pass"}
'''
