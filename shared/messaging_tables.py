"""The tables every service has for reliable messaging: the transactional outbox (written in the same
transaction as the state change it announces), the consumer inbox (message ids already applied), and stored
answers to idempotent HTTP calls."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

# The column type of every amount of money, money counter and integer id or sequence, in every service's tables.
# PostgreSQL's INTEGER is 32-bit: SYS:FUNDING (minus every opening balance and monthly credit) passes -2^31 fen
# at -21.47 M yuan, and a sequence at 1k postings/s runs out within weeks. SQLite's INTEGER is already 64-bit,
# and only a column declared exactly INTEGER PRIMARY KEY autoincrements, so SQLite keeps INTEGER (which also
# keeps `make migration`, run against a scratch SQLite database, free of spurious type changes).
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    seq: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    message_id: str = Field(index=True, unique=True, max_length=64)
    topic: str = Field(max_length=128)
    key: str = Field(max_length=128)
    payload: bytes
    created_at: datetime


class InboxMessage(SQLModel, table=True):
    """The id of every message a consumer applied, so that a redelivery applies nothing twice. Kept for
    `inbox_retention_s` (shared/dead_letters.py `forget_old_inbox_ids`): longer than Kafka keeps a record, so
    no redelivery can come after its id is forgotten."""

    __tablename__ = "inbox"

    message_id: str = Field(primary_key=True, max_length=64)
    message_type: str = Field(max_length=96)
    received_at: datetime = Field(index=True)


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"

    scope: str = Field(primary_key=True, max_length=160)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    body: bytes
    created_at: datetime
