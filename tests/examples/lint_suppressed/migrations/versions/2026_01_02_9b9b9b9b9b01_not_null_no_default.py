"""not null no default

Revision ID: 9b9b9b9b9b01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9b9b9b9b9b01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    # dbtasks: allow adding-required-field: the table is tiny and the release has a maintenance window
    op.add_column("users", sa.Column("age", sa.Integer(), nullable=False))


def downgrade():
    op.drop_column("users", "age")
