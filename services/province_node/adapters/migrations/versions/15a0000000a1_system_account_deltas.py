"""system accounts: balance changes as rows, folded into the account shortly after (ledger_repo.py)

Every transfer's accept updated SYS:IN_FLIGHT's row, so on PostgreSQL every accept queued behind the one before
for that row's lock until its commit (issue 9: 6.5 ms of lock wait per accept at 120/s, which capped the giver's
node). A transaction now inserts its system-account changes here instead (no lock), and one job per node folds
them into `accounts`. 64-bit ids and amounts on PostgreSQL, INTEGER PRIMARY KEY (autoincrement) on SQLite.

Revision ID: 15a0000000a1
Revises: 14a0000000a1
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '15a0000000a1'
down_revision = '14a0000000a1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('system_account_deltas',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sqlmodel.sql.sqltypes.AutoString(length=80), nullable=False),
    sa.Column('delta_fen', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_system_account_deltas_account_id'), 'system_account_deltas', ['account_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_system_account_deltas_account_id'), table_name='system_account_deltas')
    op.drop_table('system_account_deltas')
