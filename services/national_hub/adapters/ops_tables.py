"""Hub tables for operators: mutual-aid statistics facts, settlement windows, risk rules and alerts, the
settlements the gateway reports for supervision, the operators' access log and audit checkpoints."""

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
    use: str = Field(max_length=10)  # transfer | pharmacy | outpatient | inpatient | premium
    person_key: str = Field(max_length=64)  # the user's psn_no (before issue 12: a binding id for quota spends)
    amount_fen: int = Field(sa_type=BIGINT)  # negative: a cancel or return withdrew that much
    at: datetime
    # Issue 12 (rows from before: NULL, read as transfer / quota_use by use): transfer | quota_use | wallet_use
    kind: str | None = Field(default=None, max_length=12)
    scope: str | None = Field(default=None, max_length=16)  # same_pool | in_province | cross_province | None
    payer_psn_no: str | None = Field(default=None, index=True, max_length=32)  # whose money (giver / holder)


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
    rule: str = Field(index=True, max_length=32)  # the rule_id
    subject: str = Field(index=True, max_length=64)  # psn_no, binding or institution the alert is about
    ref: str = Field(unique=True, max_length=80)  # what raised it: one alert per cause
    details_json: str
    state: str = Field(index=True, max_length=10)  # OPEN | RESOLVED
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str | None = Field(default=None, max_length=200)  # the reviewer's note
    # Issue 12: the API's subject object, the transfer this alert holds (HELD at the hub until resolved), and
    # the decision (dismiss | release | reject) with the reviewer's name.
    subject_json: str | None = None
    held_transfer_id: str | None = Field(default=None, index=True, max_length=40)
    decision: str | None = Field(default=None, max_length=10)
    reviewer: str | None = Field(default=None, max_length=64)


class RiskRuleSetting(SQLModel, table=True):
    """An operator's setting of a built-in rule (domain/risk_rules.py); a rule without a row has its defaults."""

    __tablename__ = "risk_rule_settings"

    rule_id: str = Field(primary_key=True, max_length=40)
    enabled: bool
    action: str = Field(max_length=8)
    params_json: str
    updated_at: datetime


class SupervisedSettlement(SQLModel, table=True):
    """A settlement (pharmacy now; outpatient and inpatient from issue 11) as reported to the hub for
    supervision, in- and cross-province: the newest version the hub has heard of."""

    __tablename__ = "supervised_settlements"
    __table_args__ = (sa.Index("ix_supervised_settlements_psn_at", "psn_no", "settled_at"),
                      sa.Index("ix_supervised_settlements_inst_at", "fixmedins_code", "settled_at"))

    setl_id: str = Field(primary_key=True, max_length=40)
    version: int
    use: str = Field(max_length=10)  # pharmacy | outpatient | inpatient
    infno: str = Field(max_length=4)
    fixmedins_code: str = Field(max_length=12)
    institution_admdvs: str = Field(max_length=6)
    payer_admdvs: str = Field(max_length=6)
    psn_no: str = Field(max_length=32)
    medfee_fen: int = Field(sa_type=BIGINT)
    acct_pay_fen: int = Field(sa_type=BIGINT)
    wallet_pay_fen: int = Field(sa_type=BIGINT)
    quota_pay_fen: int = Field(sa_type=BIGINT)
    cash_pay_fen: int = Field(sa_type=BIGINT)
    settled_at: datetime
    cancelled: bool = False


class AccessLogEntry(SQLModel, table=True):
    """Every operator read of a person's data and every alert decision (PIPL): who, when, what, about whom."""

    __tablename__ = "ops_access_log"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    time: datetime = Field(index=True)
    reviewer: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=40)
    subject_masked: str = Field(max_length=64)


class AuditCheckpoint(SQLModel, table=True):
    """A service instance's audit-journal head as it reported it (shared/audit.py), kept by the hub: a later
    chain that no longer contains this (seq, hash) was rewritten."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (sa.UniqueConstraint("service", "head_seq", name="uq_audit_checkpoints_service_seq"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    service: str = Field(index=True, max_length=40)
    head_seq: int = Field(sa_type=BIGINT)
    head_hash: str = Field(max_length=64)
    entries: int = Field(sa_type=BIGINT)
    received_at: datetime


OPS_TABLES = (AidFact, SettlementWindow, RiskAlert, RiskRuleSetting, SupervisedSettlement, AccessLogEntry,
              AuditCheckpoint)
