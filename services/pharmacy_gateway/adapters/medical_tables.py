"""The gateway's tables for hospitals and clinics (定点医疗机构): what kind of institution each is and its level,
the medical attributes of catalogue entries (national, and per province of treatment: 就医地目录), and the
medical settlements it has learned of from the payers' nodes (for clearing and 3201)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT

NATIONAL_SCOPE = "000000"  # the scope of national catalogue entries


class InstitutionProfile(SQLModel, table=True):
    """kind pharmacy | hospital | clinic and hosp_lv "1" | "2" | "3" of a registered institution (absent: a
    pharmacy, as every institution registered before hospitals existed)."""

    __tablename__ = "institution_profiles"

    fixmedins_code: str = Field(primary_key=True, max_length=12)
    kind: str = Field(max_length=10)
    hosp_lv: str = Field(max_length=1)
    updated_at: datetime
    # The `institutions` registry stamp of the change that wrote this row (as Institution.stamp).
    stamp: int = Field(default=0, sa_type=BIGINT, index=True, sa_column_kwargs={"server_default": "0"})


class MedicalCatalogueEntry(SQLModel, table=True):
    """A catalogue item's class for settlement at hospitals: `scope` is a province code (entries for treatment in
    that province) or NATIONAL_SCOPE."""

    __tablename__ = "medical_catalogue"

    scope: str = Field(primary_key=True, max_length=6)
    med_list_codg: str = Field(primary_key=True, max_length=50)
    name: str = Field(max_length=200)
    category: str = Field(max_length=16)  # drug | device | service | daily_goods
    chrgitm_lv: str = Field(max_length=2)  # 01 甲类 | 02 乙类 | 03 丙类
    selfpay_prop: str = Field(max_length=12)  # decimal string, 乙类 first self-pay share
    pric_uplmt_fen: int | None = Field(default=None, sa_type=BIGINT)  # price ceiling per unit
    updated_at: datetime


class MedicalSettlementRecord(SQLModel, table=True):
    """A hospital or clinic settlement as the gateway last heard of it from the payer's node (highest `version`
    wins). Clearing events are emitted when it starts or stops taking effect across provinces; 3201 sums the
    ones in effect."""

    __tablename__ = "medical_settlement_records"
    # 3201's question: an institution's settlements of some days (one range however long its history). One
    # index where each column had its own: a settlement written updates one index fewer.
    __table_args__ = (sa.Index("ix_medical_settlement_records_institution_day", "fixmedins_code", "settle_day"),)

    setl_id: str = Field(primary_key=True, max_length=40)
    msgid: str = Field(max_length=30)
    mdtrt_id: str = Field(max_length=40)
    fixmedins_code: str = Field(max_length=12)
    institution_admdvs: str = Field(max_length=6)
    psn_no: str = Field(max_length=32)
    payer_admdvs: str = Field(max_length=6)
    insutype: str = Field(max_length=3)
    setting: str = Field(max_length=12)  # outpatient | inpatient
    state: str = Field(max_length=12)  # SETTLED | CANCELLED | REVERSED
    version: int
    medfee_fen: int = Field(sa_type=BIGINT)
    fund_pay_fen: int = Field(sa_type=BIGINT)
    acct_pay_fen: int = Field(sa_type=BIGINT)
    mulaid_pay_fen: int = Field(sa_type=BIGINT)
    cash_pay_fen: int = Field(sa_type=BIGINT)
    settle_day: str = Field(max_length=10)  # Asia/Shanghai date of settlement, for 3201
    settled_at: datetime
    updated_at: datetime


MEDICAL_TABLES = (InstitutionProfile, MedicalCatalogueEntry, MedicalSettlementRecord)
