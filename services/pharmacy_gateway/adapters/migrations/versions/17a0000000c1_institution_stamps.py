"""gateway registry: institutions and their profiles carry the stamp of the change that wrote them

A registration reloaded every institution on every replica; now a replica reads only the rows stamped after the
stamp it holds (service_layer/context.py). Existing rows get stamp 0: a replica that starts loads them all.

Revision ID: 17a0000000c1
Revises: 16a0000000c1
"""
from alembic import op
import sqlalchemy as sa


revision = '17a0000000c1'
down_revision = '16a0000000c1'
branch_labels = None
depends_on = None

_STAMP = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    for table in ('institutions', 'institution_profiles'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('stamp', _STAMP, server_default='0', nullable=False))
            batch_op.create_index(batch_op.f(f'ix_{table}_stamp'), ['stamp'], unique=False)


def downgrade() -> None:
    for table in ('institution_profiles', 'institutions'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f'ix_{table}_stamp'))
            batch_op.drop_column('stamp')
