"""add events.r with a volatile default: the table is rewritten

Revision ID: e3e3e3e3e303
Revises: e2e2e2e2e202
Create Date: 2026-03-03 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'e3e3e3e3e303'
down_revision = 'e2e2e2e2e202'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("events", sa.Column("r", sa.Float(), server_default=sa.text("random()"), nullable=False))


def downgrade():
    op.drop_column("events", "r")
