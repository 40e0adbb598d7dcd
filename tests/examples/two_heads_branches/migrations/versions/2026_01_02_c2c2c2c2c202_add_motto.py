"""add users.motto

Revision ID: c2c2c2c2c202
Revises: c2c2c2c2c201
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'c2c2c2c2c202'
down_revision = 'c2c2c2c2c201'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("motto", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "motto")
