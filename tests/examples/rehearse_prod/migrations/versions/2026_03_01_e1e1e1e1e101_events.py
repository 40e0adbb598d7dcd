"""events

Revision ID: e1e1e1e1e101
Revises:
Create Date: 2026-03-01 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'e1e1e1e1e101'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("n", sa.Integer(), nullable=False),
    )


def downgrade():
    op.drop_table("events")
