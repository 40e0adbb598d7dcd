"""drop column

Revision ID: 9b9b9b9b9b05
Revises: 9b9b9b9b9b04
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '9b9b9b9b9b05'
down_revision = '9b9b9b9b9b04'
branch_labels = None
depends_on = None


def upgrade():
    # dbtasks: allow ban-drop-column: the table is tiny and the release has a maintenance window
    op.drop_column("posts", "score")


def downgrade():
    op.add_column("posts", sa.Column("score", sa.Integer(), nullable=True))
