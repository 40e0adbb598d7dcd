"""docstring names another revision id

Revision ID: ba9876543210
Revises: f1f1f1f1f103
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'f1f1f1f1f104'
down_revision = 'f1f1f1f1f103'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("motto", sa.Text(), nullable=True))


def downgrade():
    op.drop_column("users", "motto")
