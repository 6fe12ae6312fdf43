"""Tables of the confirmations for relatives without a smartphone (issue 13): the SMS codes sent with a binding
request, the service-counter clerks, and how each binding confirmed at this node was confirmed."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class SmsConfirmationCode(SQLModel, table=True):
    """One 6-digit code per binding request, for its relative (kept as a keyed hash, never in clear).
    OPEN -> USED (confirmed by the reply) or VOID (5 wrong codes from the relative's phone)."""

    __tablename__ = "sms_confirmation_codes"

    binding_id: str = Field(primary_key=True, max_length=64)
    relative_psn_no: str = Field(index=True, max_length=32)
    code_hash: str = Field(max_length=64)
    state: str = Field(max_length=8)
    wrong_codes: int = Field(default=0, sa_type=BIGINT)
    expires_at: datetime
    created_at: datetime


class Clerk(SQLModel, table=True):
    """A service-counter clerk of this province's node; the bearer token is kept as its SHA-256 only."""

    __tablename__ = "clerks"

    clerk_id: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=64)
    token_hash: str = Field(unique=True, max_length=64)
    created_at: datetime


class BindingConfirmation(SQLModel, table=True):
    """How a binding whose relative is insured here was confirmed: face (app), sms, or counter (with the clerk)."""

    __tablename__ = "binding_confirmations"

    binding_id: str = Field(primary_key=True, max_length=64)
    relative_psn_no: str = Field(index=True, max_length=32)
    method: str = Field(max_length=8)
    clerk_id: str | None = Field(default=None, max_length=32)
    confirmed_at: datetime


CONFIRMATION_TABLES = (SmsConfirmationCode, Clerk, BindingConfirmation)
