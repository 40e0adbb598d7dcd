"""no downgrade at all

Revision ID: f1f1f1f1f101
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'f1f1f1f1f101'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))

