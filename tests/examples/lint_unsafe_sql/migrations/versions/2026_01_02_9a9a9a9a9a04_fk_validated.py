"""fk validated

Revision ID: 9a9a9a9a9a04
Revises: 9a9a9a9a9a03
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9a9a9a9a9a04'
down_revision = '9a9a9a9a9a03'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("posts", sa.Column("editor_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key("fk_posts_editor_id", "posts", "users", ["editor_id"], ["id"])


def downgrade():
    op.drop_constraint("fk_posts_editor_id", "posts", type_="foreignkey")
    op.drop_column("posts", "editor_id")
