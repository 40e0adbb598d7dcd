"""add users.age with a default

Revision ID: 6d6d6d6d6d01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '6d6d6d6d6d01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("age", sa.Integer(), server_default="0", nullable=False))


def downgrade():
    op.drop_column("users", "age")
