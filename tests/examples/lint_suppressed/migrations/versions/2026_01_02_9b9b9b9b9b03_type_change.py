"""type change

Revision ID: 9b9b9b9b9b03
Revises: 9b9b9b9b9b02
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9b9b9b9b9b03'
down_revision = '9b9b9b9b9b02'
branch_labels = None
depends_on = None


def upgrade():
    # dbtasks: allow changing-column-type: the table is tiny and the release has a maintenance window
    op.alter_column("posts", "title", type_=sa.String(100))


def downgrade():
    op.alter_column("posts", "title", type_=sa.Text())
