"""downgrade that does nothing

Revision ID: f1f1f1f1f102
Revises: f1f1f1f1f101
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = 'f1f1f1f1f102'
down_revision = 'f1f1f1f1f101'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))


def downgrade():
    pass
