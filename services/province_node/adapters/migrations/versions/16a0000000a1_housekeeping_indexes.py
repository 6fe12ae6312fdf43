"""indexes for the housekeeping jobs' questions

Every housekeeping interval, on every node, the year-end job asks which quota grants of past years are still
OPEN, and the premium job which reservations are stale. Without an index each question read every grant and
every premium payment of every year.

Revision ID: 16a0000000a1
Revises: 15a0000000a1
"""
from alembic import op

from shared.migrations import create_index_online


revision = '16a0000000a1'
down_revision = '15a0000000a1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_online('quota_grants', 'ix_quota_grants_state_year', ['state', 'year'])
    create_index_online('premium_payments', 'ix_premium_payments_state_created_at', ['state', 'created_at'])


def downgrade() -> None:
    with op.batch_alter_table('premium_payments', schema=None) as batch_op:
        batch_op.drop_index('ix_premium_payments_state_created_at')
    with op.batch_alter_table('quota_grants', schema=None) as batch_op:
        batch_op.drop_index('ix_quota_grants_state_year')
