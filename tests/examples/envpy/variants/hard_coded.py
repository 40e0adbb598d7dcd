"""env.py with its URL written into it (the test fills in the placeholder), plain psycopg2 underneath."""
from alembic import context
from sqlalchemy import create_engine, pool

from models import Base

config = context.config
target_metadata = Base.metadata
URL = "HARD_CODED_URL"


def run_migrations_online():
    engine = create_engine(URL, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=URL, target_metadata=target_metadata, literal_binds=True, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
