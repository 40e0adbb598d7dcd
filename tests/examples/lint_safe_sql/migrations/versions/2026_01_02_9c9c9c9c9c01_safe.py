"""safe forms

Revision ID: 9c9c9c9c9c01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9c9c9c9c9c01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("users", sa.Column("age", sa.Integer(), nullable=True))
    op.add_column("users", sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False))
    with op.get_context().autocommit_block():
        op.create_index("ix_posts_title", "posts", ["title"], postgresql_concurrently=True)
    op.add_column("posts", sa.Column("editor_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key("fk_posts_editor_id", "posts", "users", ["editor_id"], ["id"], postgresql_not_valid=True)


def downgrade():
    op.drop_constraint("fk_posts_editor_id", "posts", type_="foreignkey")
    op.drop_column("posts", "editor_id")
    with op.get_context().autocommit_block():
        op.drop_index("ix_posts_title", table_name="posts", postgresql_concurrently=True)
    op.drop_column("users", "active")
    op.drop_column("users", "age")
