"""drop column

Revision ID: 9a9a9a9a9a05
Revises: 9a9a9a9a9a04
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9a9a9a9a9a05'
down_revision = '9a9a9a9a9a04'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_column("posts", "score")


def downgrade():
    op.add_column("posts", sa.Column("score", sa.Integer(), nullable=True))
