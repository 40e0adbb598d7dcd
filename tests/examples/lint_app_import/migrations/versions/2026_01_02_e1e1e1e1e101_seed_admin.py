"""insert the admin user

Revision ID: e1e1e1e1e101
Revises: a0a0a0a0a001
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

from models import User

revision = 'e1e1e1e1e101'
down_revision = 'a0a0a0a0a001'
branch_labels = None
depends_on = None


def upgrade():
    op.bulk_insert(User.__table__, [{"email": "admin@example.com", "name": "admin"}])


def downgrade():
    op.execute("delete from users where email = 'admin@example.com'")
