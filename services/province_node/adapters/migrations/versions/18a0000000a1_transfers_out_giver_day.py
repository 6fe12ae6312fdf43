"""transfers_out: one index on (giver_psn_no, accepted_day) for the daily limit

Every accept counts the giver's transfers of the day. With an index on each column alone, that read every
transfer the giver ever sent (or every transfer of the day in the province); the pair is one short range, and
an accept now updates one index where it updated two.

Revision ID: 18a0000000a1
Revises: 17a0000000a1
"""
from alembic import op

from shared.migrations import create_index_online


revision = '18a0000000a1'
down_revision = '17a0000000a1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_index_online('transfers_out', 'ix_transfers_out_giver_day', ['giver_psn_no', 'accepted_day'],
                        replaces=('ix_transfers_out_giver_psn_no', 'ix_transfers_out_accepted_day'))


def downgrade() -> None:
    with op.batch_alter_table('transfers_out', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfers_out_accepted_day'), ['accepted_day'], unique=False)
        batch_op.create_index(batch_op.f('ix_transfers_out_giver_psn_no'), ['giver_psn_no'], unique=False)
        batch_op.drop_index('ix_transfers_out_giver_day')
