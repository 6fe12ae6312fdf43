"""The node's side of hospital and clinic settlement: its people's visits (mdtrt_id issued here, prefixed with
the province), their fee lines, settlements, the year's accumulators, the province's policy, every medical
message by msgid (answer stored with its effects, as pos_operations), and filings (异地就医备案)."""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class MedicalPolicyRow(SQLModel, table=True):
    """The province's current policy (one row, `policy_id` "current"), JSON as PUT /v1/admin/medical-policy."""

    __tablename__ = "medical_policy"

    policy_id: str = Field(primary_key=True, max_length=16)
    body: str
    updated_at: datetime


class MedicalVisitRow(SQLModel, table=True):
    __tablename__ = "medical_visits"

    mdtrt_id: str = Field(primary_key=True, max_length=40)
    msgid: str = Field(unique=True, max_length=30)  # the 2201 / 2401 that opened it
    psn_no: str = Field(index=True, max_length=32)
    setting: str = Field(max_length=12)  # outpatient | inpatient
    state: str = Field(max_length=12)  # REGISTERED | ADMITTED | DISCHARGED | SETTLED | CANCELLED
    fixmedins_code: str = Field(max_length=12)
    institution_admdvs: str = Field(max_length=6)
    hosp_lv: str = Field(max_length=1)
    insutype: str = Field(max_length=3)
    med_type: str = Field(max_length=6)
    ipt_otp_no: str = Field(max_length=30)
    visit_day: date  # begntime's date (Asia/Shanghai): which filing covers the visit
    # Inpatient: the deductible used by this admission's settlements (per admission, API.md).
    deductible_used_fen: int = Field(default=0, sa_type=BIGINT)
    version: int
    created_at: datetime
    updated_at: datetime


class MedicalLineRow(SQLModel, table=True):
    __tablename__ = "medical_lines"

    mdtrt_id: str = Field(primary_key=True, max_length=40)
    feedetl_sn: str = Field(primary_key=True, max_length=30)
    init_feedetl_sn: str = Field(max_length=30)
    chrg_bchno: str = Field(max_length=30)
    med_list_codg: str = Field(max_length=50)
    amount_fen: int = Field(sa_type=BIGINT)
    cnt: str = Field(max_length=24)
    price_fen: int = Field(sa_type=BIGINT)
    fulamt_fen: int = Field(sa_type=BIGINT)
    overlmt_fen: int = Field(sa_type=BIGINT)
    preselfpay_fen: int = Field(sa_type=BIGINT)
    inscp_fen: int = Field(sa_type=BIGINT)
    daily_goods: bool
    chrgitm_lv: str | None = Field(default=None, max_length=2)
    selfpay_prop: str = Field(max_length=12)
    setl_id: str | None = Field(default=None, max_length=40)  # set while a settlement in effect covers the line
    created_at: datetime


class MedicalSettlementRow(SQLModel, table=True):
    __tablename__ = "medical_settlements"

    setl_id: str = Field(primary_key=True, max_length=40)
    msgid: str = Field(unique=True, max_length=30)
    mdtrt_id: str = Field(index=True, max_length=40)
    chrg_bchno: str = Field(max_length=30)
    psn_no: str = Field(index=True, max_length=32)
    fixmedins_code: str = Field(max_length=12)
    insutype: str = Field(max_length=3)
    setting: str = Field(max_length=12)
    state: str = Field(max_length=12)  # SETTLED | CANCELLED | REVERSED
    version: int
    year: int
    medfee_fen: int = Field(sa_type=BIGINT)
    fulamt_fen: int = Field(sa_type=BIGINT)
    overlmt_fen: int = Field(sa_type=BIGINT)
    preselfpay_fen: int = Field(sa_type=BIGINT)
    inscp_fen: int = Field(sa_type=BIGINT)
    act_pay_dedc_fen: int = Field(sa_type=BIGINT)
    hifp_pay_fen: int = Field(sa_type=BIGINT)
    ratio: str = Field(max_length=12)
    acct_pay_fen: int = Field(sa_type=BIGINT)
    wallet_pay_fen: int = Field(sa_type=BIGINT)
    quota_pay_fen: int = Field(sa_type=BIGINT)
    quota_parts: str = Field(max_length=4000)  # JSON [[binding_id, amount_fen], ...]
    cash_pay_fen: int = Field(sa_type=BIGINT)
    settled_at: datetime
    updated_at: datetime


class MedicalAccumulator(SQLModel, table=True):
    """Per person, calendar year and setting: the outpatient deductible used (per year) and what the fund paid
    (against the annual cap). Cancels and reversals give both back."""

    __tablename__ = "medical_accumulators"

    psn_no: str = Field(primary_key=True, max_length=32)
    year: int = Field(primary_key=True)
    setting: str = Field(primary_key=True, max_length=12)
    deductible_used_fen: int = Field(default=0, sa_type=BIGINT)
    fund_paid_fen: int = Field(default=0, sa_type=BIGINT)
    updated_at: datetime


class MedicalOperation(SQLModel, table=True):
    """Every state-changing medical message by msgid, with its answer (stored with its effects). A 2601 for a
    msgid not seen yet leaves a PREEMPTED row: that message is refused should it arrive later."""

    __tablename__ = "medical_operations"

    msgid: str = Field(primary_key=True, max_length=30)
    infno: str = Field(max_length=9)  # the infno, or PREEMPTED
    mdtrt_id: str | None = Field(default=None, max_length=40)
    setl_id: str | None = Field(default=None, max_length=40)
    effect: str = Field(max_length=8)  # CHARGE | REFUND | NONE
    request_hash: str = Field(max_length=64)
    response: bytes
    reversed_by: str | None = Field(default=None, max_length=30)
    created_at: datetime


class FilingRow(SQLModel, table=True):
    """异地就医备案 of one of this node's people (POST /v1/filings)."""

    __tablename__ = "filings"

    filing_id: str = Field(primary_key=True, max_length=40)
    psn_no: str = Field(index=True, max_length=32)
    mdtrtarea_admdvs: str = Field(max_length=6)
    kind: str = Field(max_length=12)  # resident | temporary
    begndate: date
    enddate: date | None = None
    state: str = Field(max_length=8)  # ACTIVE | ENDED
    created_at: datetime
    ended_at: datetime | None = None


MEDICAL_TABLES = (MedicalPolicyRow, MedicalVisitRow, MedicalLineRow, MedicalSettlementRow, MedicalAccumulator,
                  MedicalOperation, FilingRow)
