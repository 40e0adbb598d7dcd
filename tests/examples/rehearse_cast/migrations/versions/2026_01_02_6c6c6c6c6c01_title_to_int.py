"""posts.title becomes an integer

Revision ID: 6c6c6c6c6c01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '6c6c6c6c6c01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column("posts", "title", type_=sa.Integer(), postgresql_using="title::integer")


def downgrade():
    op.alter_column("posts", "title", type_=sa.Text())
