"""add users.bio

Revision ID: b1b1b1b1b101
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'b1b1b1b1b101'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "bio")
