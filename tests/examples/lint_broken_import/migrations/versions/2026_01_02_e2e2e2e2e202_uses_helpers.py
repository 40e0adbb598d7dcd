"""a revision that imports project helpers

Revision ID: e2e2e2e2e202
Revises: e2e2e2e2e201
Create Date: 2026-01-02 10:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

import helpers

revision = 'e2e2e2e2e202'
down_revision = 'e2e2e2e2e201'
branch_labels = None
depends_on = None


def upgrade():
    op.execute(helpers.SQL)


def downgrade():
    pass
