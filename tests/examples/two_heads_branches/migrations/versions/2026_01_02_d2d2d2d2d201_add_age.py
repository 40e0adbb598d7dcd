"""add users.age

Revision ID: d2d2d2d2d201
Revises: a0a0a0a0a001
Create Date: 2026-01-03 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'd2d2d2d2d201'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))


def downgrade():
    op.drop_column("users", "age")
