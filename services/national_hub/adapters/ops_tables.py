"""Hub tables for operators: mutual-aid statistics facts, settlement windows, risk alerts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class AidFact(SQLModel, table=True):
    """One use of mutual aid (人次) as NHSA counts them: by month, province pair and use."""

    __tablename__ = "aid_facts"
    # The rapid-transfers rule counts one receiver's recent transfers on every credit.
    __table_args__ = (sa.Index("ix_aid_facts_person_use_at", "person_key", "use", "at"),)

    ref: str = Field(primary_key=True, max_length=80)
    month: str = Field(index=True, max_length=7)  # YYYY-MM, Asia/Shanghai
    from_admdvs: str = Field(max_length=6)  # whose money (the giver's province)
    to_admdvs: str = Field(max_length=6)  # where it was used (the relative's or the pharmacy's province)
    use: str = Field(max_length=10)  # transfer | pharmacy | premium
    person_key: str = Field(max_length=64)  # a psn_no, or a binding id for quota spends
    amount_fen: int = Field(sa_type=BIGINT)
    at: datetime


class SettlementWindow(SQLModel, table=True):
    __tablename__ = "settlement_windows"

    window_id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    opened_at: datetime
    closed_at: datetime
    obligations: int = Field(sa_type=BIGINT)  # how many obligations the window netted: a counter of money moves
    positions_json: str  # the netting result, frozen at close


class RiskAlert(SQLModel, table=True):
    __tablename__ = "risk_alerts"

    alert_id: str = Field(primary_key=True, max_length=40)
    rule: str = Field(index=True, max_length=32)
    subject: str = Field(max_length=64)  # psn_no, binding or settlement the alert is about
    ref: str = Field(unique=True, max_length=80)  # what raised it: one alert per cause
    details_json: str
    state: str = Field(index=True, max_length=10)  # OPEN | RESOLVED
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = Field(default=None, max_length=200)


OPS_TABLES = (AidFact, SettlementWindow, RiskAlert)
