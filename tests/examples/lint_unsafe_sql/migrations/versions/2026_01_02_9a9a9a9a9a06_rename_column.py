"""rename column

Revision ID: 9a9a9a9a9a06
Revises: 9a9a9a9a9a05
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9a9a9a9a9a06'
down_revision = '9a9a9a9a9a05'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("users", "name", new_column_name="full_name")


def downgrade():
    op.alter_column("users", "full_name", new_column_name="name")
