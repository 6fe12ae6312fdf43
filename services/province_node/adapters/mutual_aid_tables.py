"""Tables of quotas (both sides) and resident premiums at a province node."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class QuotaGrant(SQLModel, table=True):
    """Giver's side: what the giver grants for a year. The reserved money itself sits on the ledger account
    QUOTA:<binding>:<year>; `mirror_*` is the relative's node's last reported view."""

    __tablename__ = "quota_grants"
    # The year-end job's question, every housekeeping interval: which grants of past years are still open? (An
    # index, or it reads every grant of every year.)
    __table_args__ = (sa.Index("ix_quota_grants_state_year", "state", "year"),)

    binding_id: str = Field(primary_key=True, max_length=40)
    year: int = Field(primary_key=True)
    giver_psn_no: str = Field(index=True, max_length=32)
    relative_psn_no: str = Field(max_length=32)
    relative_admdvs: str = Field(max_length=6)
    annual_quota_fen: int = Field(sa_type=BIGINT)
    version: int
    mirror_quota_fen: int = Field(default=0, sa_type=BIGINT)
    mirror_used_fen: int = Field(default=0, sa_type=BIGINT)
    state: str = Field(max_length=10)  # OPEN | CLOSING | CLOSED
    updated_at: datetime


class QuotaMirror(SQLModel, table=True):
    """Relative's side: the quota the relative may spend here without asking the giver's province."""

    __tablename__ = "quota_mirrors"

    binding_id: str = Field(primary_key=True, max_length=40)
    year: int = Field(primary_key=True)
    receiver_psn_no: str = Field(index=True, max_length=32)
    giver_psn_no: str = Field(max_length=32)
    giver_admdvs: str = Field(max_length=6)
    annual_quota_fen: int = Field(sa_type=BIGINT)
    used_fen: int = Field(sa_type=BIGINT)
    version: int
    closed: bool
    updated_at: datetime


class PremiumPayment(SQLModel, table=True):
    """Beneficiary's side: one resident premium per person and year (RESERVED while the payer pays)."""

    __tablename__ = "premium_payments"
    __table_args__ = (sa.UniqueConstraint("beneficiary_psn_no", "year", name="uq_premium_person_year"),
                      # The expiry job's question, every housekeeping interval: which reservations are stale?
                      sa.Index("ix_premium_payments_state_created_at", "state", "created_at"))

    payment_id: str = Field(primary_key=True, max_length=40)
    beneficiary_psn_no: str = Field(max_length=32)
    year: int
    amount_fen: int = Field(sa_type=BIGINT)
    state: str = Field(max_length=10)  # RESERVED | PAID
    payer_psn_no: str = Field(max_length=32)
    payer_admdvs: str = Field(max_length=6)
    source: str = Field(max_length=8)  # wallet | quota
    binding_id: str | None = Field(default=None, max_length=40)
    created_at: datetime
    paid_at: datetime | None = None


MUTUAL_AID_TABLES = (QuotaGrant, QuotaMirror, PremiumPayment)
