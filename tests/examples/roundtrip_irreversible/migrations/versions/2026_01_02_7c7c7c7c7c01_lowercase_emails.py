"""lower-case every email

Revision ID: 7c7c7c7c7c01
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

revision = '7c7c7c7c7c01'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("update users set email = lower(email)")


def downgrade():
    raise NotImplementedError("the original case of emails is lost")
