"""audit journal: entries waiting to be sealed into the chain (shared/audit.py, PostgreSQL)

On PostgreSQL a transaction no longer numbers and chains its audit entries under one lock for the instance (which
queued every commit behind the one before): it inserts them into `audit_pending`, and the instance's sealer
moves them into `audit_journal`, numbered and chained, shortly after. SQLite leaves the table empty. 64-bit ids on
PostgreSQL, INTEGER PRIMARY KEY (autoincrement) on SQLite.

Revision ID: 14a0000000a1
Revises: 13a0000000a1
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '14a0000000a1'
down_revision = '13a0000000a1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_pending',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('data', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('audit_pending')
