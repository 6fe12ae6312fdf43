"""settlements and medical settlement records: one index on (fixmedins_code, settle_day) for 3201

3201 sums an institution's settlements of some days. With an index on each column alone it read the
institution's whole history (or every institution's day); the pair is one range, and each settlement recorded
now updates one index where it updated two.

Revision ID: 18a0000000c1
Revises: 17a0000000c1
"""
from alembic import op

from shared.migrations import create_index_online


revision = '18a0000000c1'
down_revision = '17a0000000c1'
branch_labels = None
depends_on = None

_TABLES = ('settlements', 'medical_settlement_records')


def upgrade() -> None:
    for table in _TABLES:
        create_index_online(table, f'ix_{table}_institution_day', ['fixmedins_code', 'settle_day'],
                            replaces=(f'ix_{table}_fixmedins_code', f'ix_{table}_settle_day'))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f'ix_{table}_settle_day'), ['settle_day'], unique=False)
            batch_op.create_index(batch_op.f(f'ix_{table}_fixmedins_code'), ['fixmedins_code'], unique=False)
            batch_op.drop_index(f'ix_{table}_institution_day')
