"""The node's side of pharmacy payments (the gateway's internal POS API).

`pos_payments`: one row per settlement of this node's people, with the parts it was paid from, so that a cancel
or a reversal gives each part back where it came from. `version` grows with every change of state.
`pos_operations`: every state-changing POS message by msgid, with the answer given, stored in the same
transaction as its postings: a repeated msgid gets the same answer and moves nothing. A reversal of a message
not seen yet leaves a PREEMPTED row, so that the message is refused if it arrives later."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class PosPaymentRow(SQLModel, table=True):
    __tablename__ = "pos_payments"

    setl_id: str = Field(primary_key=True, max_length=40)
    msgid: str = Field(unique=True, max_length=30)
    mdtrt_id: str = Field(max_length=40)
    psn_no: str = Field(index=True, max_length=32)
    fixmedins_code: str = Field(max_length=12)
    insutype: str = Field(max_length=3)
    state: str = Field(max_length=12)  # SETTLED | CANCELLED | REVERSED
    version: int
    medfee_fen: int = Field(sa_type=BIGINT)
    eligible_fen: int = Field(sa_type=BIGINT)
    acct_pay_fen: int = Field(sa_type=BIGINT)
    wallet_pay_fen: int = Field(sa_type=BIGINT)
    quota_pay_fen: int = Field(sa_type=BIGINT)
    quota_parts: str = Field(max_length=4000)  # JSON [[binding_id, amount_fen], ...]
    cash_pay_fen: int = Field(sa_type=BIGINT)
    settled_at: datetime
    updated_at: datetime


class PosOperation(SQLModel, table=True):
    __tablename__ = "pos_operations"

    msgid: str = Field(primary_key=True, max_length=30)
    kind: str = Field(max_length=12)  # SETTLE | CANCEL | REVERSE | PREEMPTED
    setl_id: str | None = Field(default=None, index=True, max_length=40)
    effect: str = Field(max_length=8)  # CHARGE | REFUND | NONE: what this message moved
    request_hash: str = Field(max_length=64)
    response: bytes
    reversed_by: str | None = Field(default=None, max_length=30)
    created_at: datetime


POS_TABLES = (PosPaymentRow, PosOperation)
