"""bigint money and ids

Every amount of money, money counter and integer id or sequence becomes 64-bit (review scale_out.md B13):
PostgreSQL's INTEGER is 32-bit, so a settlement's amounts above 21.47 M yuan fail, and the outbox sequence runs
out within weeks. SQLite's INTEGER is already 64-bit (and an autoincrement key must stay exactly INTEGER PRIMARY
KEY there): on SQLite this revision changes nothing.

An autoincrement key's sequence is widened too: a SERIAL's sequence is created `AS integer` and would stop at
2^31 - 1 even in a BIGINT column.

Revision ID: 9b16000000c1
Revises: fccc09276bce
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types)


revision = '9b16000000c1'
down_revision = 'fccc09276bce'
branch_labels = None
depends_on = None

# (table, column, autoincrement key)
COLUMNS = [
    ('settlements', 'medfee_fen', False),
    ('settlements', 'eligible_fen', False),
    ('settlements', 'acct_pay_fen', False),
    ('settlements', 'mulaid_pay_fen', False),
    ('settlements', 'cash_pay_fen', False),
    ('outbox', 'seq', True),
]


def _retype(sql_type: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    by_table: dict[str, list[str]] = {}
    for table, column, _serial in COLUMNS:
        by_table.setdefault(table, []).append(column)
    for table, columns in by_table.items():
        # One ALTER TABLE per table: PostgreSQL rewrites a table once for all of its columns, not once for each.
        op.execute(f'ALTER TABLE "{table}" ' + ", ".join(f'ALTER COLUMN "{column}" TYPE {sql_type}'
                                                        for column in columns))
    for table, column, serial in COLUMNS:
        if serial:
            op.execute(f"ALTER SEQUENCE {_sequence_of(table, column)} AS {sql_type}")


def _sequence_of(table: str, column: str) -> str:
    """The (schema-qualified, quoted as needed) name of the sequence behind a SERIAL column."""
    name = op.get_bind().execute(sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
                                 {"table": table, "column": column}).scalar()
    assert name is not None, f"{table}.{column} has no sequence"
    return str(name)


def upgrade() -> None:
    _retype("bigint")


def downgrade() -> None:
    # Fails, and changes nothing, once a value no longer fits 32 bits.
    _retype("integer")
