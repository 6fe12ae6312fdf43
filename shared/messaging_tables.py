"""The tables every service has for reliable messaging: the transactional outbox (written in the same
transaction as the state change it announces), the consumer inbox (message ids already applied), and stored
answers to idempotent HTTP calls."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox"

    seq: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(index=True, unique=True, max_length=64)
    topic: str = Field(max_length=128)
    key: str = Field(max_length=128)
    payload: bytes
    created_at: datetime


class InboxMessage(SQLModel, table=True):
    __tablename__ = "inbox"

    message_id: str = Field(primary_key=True, max_length=64)
    message_type: str = Field(max_length=96)
    received_at: datetime


class IdempotencyRecord(SQLModel, table=True):
    __tablename__ = "idempotency_records"

    scope: str = Field(primary_key=True, max_length=160)
    key: str = Field(primary_key=True, max_length=200)
    request_hash: str = Field(max_length=64)
    status_code: int
    body: bytes
    created_at: datetime
