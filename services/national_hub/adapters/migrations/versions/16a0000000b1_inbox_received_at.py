"""inbox: an index on received_at, for forgetting ids older than the retention (shared/dead_letters.py)

Every applied message's id stayed in the inbox for ever: tens of millions of rows a day at the hub at national
rates, in a unique index whose pages then no longer fit in memory. Ids older than `inbox_retention_s` (longer
than Kafka keeps a record) are now deleted by a periodic job, which finds them through this index.

Revision ID: 16a0000000b1
Revises: 14a0000000b1
"""
from alembic import op

from shared.migrations import create_index_online


revision = '16a0000000b1'
down_revision = '14a0000000b1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_online('inbox', 'ix_inbox_received_at', ['received_at'])


def downgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_received_at'))
