"""add users.bio

Revision ID: 7c7c7c7c7c02
Revises: 7c7c7c7c7c01
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '7c7c7c7c7c02'
down_revision = '7c7c7c7c7c01'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("bio", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "bio")
