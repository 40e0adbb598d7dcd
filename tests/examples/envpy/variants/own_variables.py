"""env.py that builds its URL from variables of its own (POSTGRESQL_HOST, POSTGRESQL_DATABASE, ...)."""
import os

from alembic import context
from sqlalchemy import URL, create_engine, pool

from models import Base

config = context.config
target_metadata = Base.metadata
URL_ = URL.create(
    "postgresql+psycopg2",
    username=os.environ.get("POSTGRESQL_USER", "postgres"),
    password=os.environ.get("POSTGRESQL_PASSWORD"),
    host=os.environ.get("POSTGRESQL_HOST", "localhost"),
    port=int(os.environ.get("POSTGRESQL_PORT", "5432")),
    database=os.environ.get("POSTGRESQL_DATABASE", "app"),
)


def run_migrations_online():
    engine = create_engine(URL_, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=URL_.render_as_string(hide_password=False), target_metadata=target_metadata, literal_binds=True,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
