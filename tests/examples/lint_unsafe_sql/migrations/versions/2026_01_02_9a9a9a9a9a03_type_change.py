"""type change

Revision ID: 9a9a9a9a9a03
Revises: 9a9a9a9a9a02
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9a9a9a9a9a03'
down_revision = '9a9a9a9a9a02'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("posts", "title", type_=sa.String(100))


def downgrade():
    op.alter_column("posts", "title", type_=sa.Text())
