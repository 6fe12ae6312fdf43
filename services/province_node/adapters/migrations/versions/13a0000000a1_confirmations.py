"""confirmations for relatives without a smartphone: SMS codes, counter clerks, how a binding was confirmed
(issue 13)

Revision ID: 13a0000000a1
Revises: 12a0000000a1
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '13a0000000a1'
down_revision = '12a0000000a1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sms_confirmation_codes',
    sa.Column('binding_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('relative_psn_no', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('code_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('wrong_codes', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('binding_id')
    )
    with op.batch_alter_table('sms_confirmation_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sms_confirmation_codes_relative_psn_no'), ['relative_psn_no'],
                              unique=False)

    op.create_table('clerks',
    sa.Column('clerk_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('token_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('clerk_id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('binding_confirmations',
    sa.Column('binding_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('relative_psn_no', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('method', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('clerk_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('confirmed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('binding_id')
    )
    with op.batch_alter_table('binding_confirmations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_binding_confirmations_relative_psn_no'), ['relative_psn_no'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('binding_confirmations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_binding_confirmations_relative_psn_no'))
    op.drop_table('binding_confirmations')
    op.drop_table('clerks')
    with op.batch_alter_table('sms_confirmation_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_confirmation_codes_relative_psn_no'))
    op.drop_table('sms_confirmation_codes')
