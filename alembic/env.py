"""Alembic environment of the example application.

- The URL comes from dbtasks settings (DATABASE_URL, ``--env NAME``, or the
  local server), never from alembic.ini.
- A connection passed in ``config.attributes["connection"]`` is used as is
  (dbtasks' checks and the pytest plugin do this).
- Upgrades hold a PostgreSQL advisory lock: when every pod runs the migration
  at start, the second process waits, then finds nothing to do.
- ``lock_timeout`` bounds how long a migration waits for a table lock.
"""

from logging.config import fileConfig

import alembic_postgresql_enum  # noqa: F401  (enum value changes in autogenerate)
from alembic import context
from sqlalchemy import text

from app.models import Base
from dbtasks.migrations import migration_lock, online_engine, quiet_alembic_chatter

config = context.config
if config.config_file_name is not None and not config.attributes.get("dbtasks_quiet_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
    quiet_alembic_chatter()

target_metadata = Base.metadata

COMPARE = dict(compare_type=True, compare_server_default=True)


def run_migrations_offline() -> None:
    """Render SQL instead of running it (``alembic upgrade --sql``)."""
    from dbtasks.migrations import settings_for

    context.configure(
        url=settings_for(config).url.render_as_string(hide_password=False),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        **COMPARE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = online_engine(config)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
        **COMPARE,
    )
    with migration_lock(connection, config):
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
