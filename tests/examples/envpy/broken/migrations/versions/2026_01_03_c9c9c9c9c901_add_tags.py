"""add tags

Revision ID: c9c9c9c9c901
Revises: b1b1b1b1b101
Create Date: 2026-01-03 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = "c9c9c9c9c901"
down_revision = "b1b1b1b1b101"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("tags", sa.Column("id", sa.BigInteger(), primary_key=True), sa.Column("name", sa.Text(), nullable=False))


def downgrade():
    op.drop_column("users", "bio")  # wrong: leaves tags behind and loses users.bio
