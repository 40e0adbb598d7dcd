"""unique posts.status per user

Revision ID: 6b6b6b6b6b01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '6b6b6b6b6b01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.create_unique_constraint("uq_posts_user_id_status", "posts", ["user_id", "status"])


def downgrade():
    op.drop_constraint("uq_posts_user_id_status", "posts", type_="unique")
