"""index not concurrent

Revision ID: 9a9a9a9a9a02
Revises: 9a9a9a9a9a01
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9a9a9a9a9a02'
down_revision = '9a9a9a9a9a01'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_posts_title", "posts", ["title"])


def downgrade():
    op.drop_index("ix_posts_title", table_name="posts")
