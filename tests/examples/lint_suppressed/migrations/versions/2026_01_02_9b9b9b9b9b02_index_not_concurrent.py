"""index not concurrent

Revision ID: 9b9b9b9b9b02
Revises: 9b9b9b9b9b01
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9b9b9b9b9b02'
down_revision = '9b9b9b9b9b01'
branch_labels = None
depends_on = None


def upgrade():
    # dbtasks: allow require-concurrent-index-creation: the table is tiny and the release has a maintenance window
    op.create_index("ix_posts_title", "posts", ["title"])


def downgrade():
    op.drop_index("ix_posts_title", table_name="posts")
