"""dbtasks: database chores for PostgreSQL + SQLAlchemy + Alembic projects."""

__version__ = "0.1.0"
