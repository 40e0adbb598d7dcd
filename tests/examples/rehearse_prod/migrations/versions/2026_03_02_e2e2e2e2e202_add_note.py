"""add events.note, nullable: a brief lock, no rewrite

Revision ID: e2e2e2e2e202
Revises: e1e1e1e1e101
Create Date: 2026-03-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'e2e2e2e2e202'
down_revision = 'e1e1e1e1e101'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("events", sa.Column("note", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("events", "note")
