"""A deliberately leaking env.py: before migrating, it opens a raw connection to a server of its own choosing."""
import socket

from alembic import context

from models import Base

config = context.config
target_metadata = Base.metadata
ADDRESS = ("127.0.0.1", 0)  # the test fills in a port

if not context.is_offline_mode():
    with socket.create_connection(ADDRESS, timeout=5):
        pass
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
