"""base: users and posts

Revision ID: a0a0a0a0a001
Revises: 
Create Date: 2026-01-01 10:00:00.000000

"""
import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
from alembic import op

revision = 'a0a0a0a0a001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    sa.Enum("draft", "published", name="post_status").create(op.get_bind())
    op.create_table(
        "users",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("email", sa.String(255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.UniqueConstraint("email", name="users_email_key"),
    )
    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("user_id", sa.BigInteger(), sa.ForeignKey("users.id", name="fk_posts_user_id"), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column(
            "status",
            sa.dialects.postgresql.ENUM("draft", "published", name="post_status", create_type=False),
            server_default="draft",
            nullable=False,
        ),
    )


def downgrade():
    op.drop_table("posts")
    op.drop_table("users")
    sa.Enum(name="post_status").drop(op.get_bind())
