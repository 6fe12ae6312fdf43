"""dead letters

A consumed message that fails every retry is parked in `dead_letters` with its error instead of freezing its
Kafka partition; later messages of its (topic, key) wait behind it (`blocked_by`) until an operator replays it
(shared/dead_letters.py). The index on (topic, key, state) answers the consumer's per-batch question "does a
PARKED dead letter hold this key?". 64-bit ids on PostgreSQL, INTEGER PRIMARY KEY (autoincrement) on SQLite.

Revision ID: 9b16000000b2
Revises: 9b16000000b1
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '9b16000000b2'
down_revision = '9b16000000b1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dead_letters',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('message_id', sa.Text(), nullable=False),
    sa.Column('topic', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('partition', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('offset', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.Text(), nullable=True),
    sa.Column('message_type', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('blocked_by', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('parked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('replayed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('attempts', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('message_id')
    )
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.create_index('ix_dead_letters_topic_key_state', ['topic', 'key', 'state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('dead_letters', schema=None) as batch_op:
        batch_op.drop_index('ix_dead_letters_topic_key_state')

    op.drop_table('dead_letters')
