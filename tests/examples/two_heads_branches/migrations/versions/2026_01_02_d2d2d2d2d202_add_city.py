"""add users.city

Revision ID: d2d2d2d2d202
Revises: d2d2d2d2d201
Create Date: 2026-01-03 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'd2d2d2d2d202'
down_revision = 'd2d2d2d2d201'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("city", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "city")
