"""add users.mood and an index

Revision ID: 7a7a7a7a7a01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
from alembic import op

revision = '7a7a7a7a7a01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    sa.Enum("happy", "sad", name="mood").create(op.get_bind())
    op.add_column("users", sa.Column("mood", sa.dialects.postgresql.ENUM("happy", "sad", name="mood", create_type=False), nullable=True))
    op.create_index("ix_posts_title", "posts", ["title"])


def downgrade():
    op.drop_column("users", "mood")
