"""gateway registry: a stamp per part, bumped by every admin change (service_layer/context.py)

With replicas on PostgreSQL each replica reloaded every institution and both catalogues every second, whether
anything had changed or not (at national scale, hundreds of thousands of rows a second). Now each replica reads
these two rows every second and reloads a part only when its stamp moved.

Revision ID: 15a0000000c1
Revises: 14a0000000c1
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '15a0000000c1'
down_revision = '14a0000000c1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamps = op.create_table('registry_stamps',
    sa.Column('part', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('version', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('part')
    )
    # Seeded, so that an admin change only ever updates its row (two replicas never race to insert it).
    op.bulk_insert(stamps, [{'part': 'institutions', 'version': 0}, {'part': 'catalogue', 'version': 0}])


def downgrade() -> None:
    op.drop_table('registry_stamps')
