"""rename column

Revision ID: 9b9b9b9b9b06
Revises: 9b9b9b9b9b05
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9b9b9b9b9b06'
down_revision = '9b9b9b9b9b05'
branch_labels = None
depends_on = None


def upgrade():
    # dbtasks: allow renaming-column: the table is tiny and the release has a maintenance window
    op.alter_column("users", "name", new_column_name="full_name")


def downgrade():
    op.alter_column("users", "full_name", new_column_name="name")
