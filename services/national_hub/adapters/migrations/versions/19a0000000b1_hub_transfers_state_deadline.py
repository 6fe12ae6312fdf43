"""hub_transfers: one index on (state, deadline_at) for the timeout scan, in place of one on each column

The timeout scan asks for ROUTED transfers past their deadline, and a binding's end for its ROUTED transfers:
both one range of the pair. Every transfer's row is inserted once and changes state twice, and each of those
writes updated both single-column indexes; now it updates one.

Revision ID: 19a0000000b1
Revises: 16a0000000b1
"""
from alembic import op

from shared.migrations import create_index_online


revision = '19a0000000b1'
down_revision = '16a0000000b1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_online('hub_transfers', 'ix_hub_transfers_state_deadline', ['state', 'deadline_at'],
                        replaces=('ix_hub_transfers_state', 'ix_hub_transfers_deadline_at'))


def downgrade() -> None:
    with op.batch_alter_table('hub_transfers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_hub_transfers_deadline_at'), ['deadline_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_hub_transfers_state'), ['state'], unique=False)
        batch_op.drop_index('ix_hub_transfers_state_deadline')
