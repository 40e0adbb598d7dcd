"""docstring names another parent

Revision ID: f1f1f1f1f103
Revises: 0123456789ab
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'f1f1f1f1f103'
down_revision = 'f1f1f1f1f102'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("nick", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "nick")
