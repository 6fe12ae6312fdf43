"""The gateway's tables: institutions and their sign-ins, the nonces of the signature window, the catalogue, the
log of every POS message by msgid (with the answer given), and the settlements it has learned of (3201)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.pharmacy_gateway.adapters.medical_tables import MEDICAL_TABLES
from shared.audit import AUDIT_TABLES
from shared.dead_letters import DeadLetter
from shared.messaging_tables import BIGINT, IdempotencyRecord, InboxMessage, OutboxMessage


class Institution(SQLModel, table=True):
    """A designated pharmacy or clinic (两定机构). Its paas_token is not stored: it is derived from the gateway
    key and paas_id (domain/tif_auth.py). `paas_token_hash` pins the token issued: should the gateway key ever
    change, the institution is told to register again instead of every signature failing without a reason."""

    __tablename__ = "institutions"

    fixmedins_code: str = Field(primary_key=True, max_length=12)
    fixmedins_name: str = Field(max_length=100)
    admdvs: str = Field(max_length=6)
    paas_id: str = Field(unique=True, max_length=40)
    paas_token_hash: str = Field(max_length=64)
    registered_at: datetime
    # The `institutions` registry stamp of the change that wrote this row: a replica reloads only the rows
    # stamped after what it holds (service_layer/context.py).
    stamp: int = Field(default=0, sa_type=BIGINT, index=True, sa_column_kwargs={"server_default": "0"})


class SignIn(SQLModel, table=True):
    """9001: an operator of an institution signed in; `sign_no` goes into every later envelope."""

    __tablename__ = "sign_ins"

    sign_no: str = Field(primary_key=True, max_length=30)
    fixmedins_code: str = Field(index=True, max_length=12)
    opter_no: str = Field(max_length=30)
    mac: str = Field(max_length=40)
    ip: str = Field(max_length=64)
    sign_time: datetime


class SeenNonce(SQLModel, table=True):
    """x-tif-nonce values seen per paasid; forgotten once outside the signature window (nothing older passes)."""

    __tablename__ = "seen_nonces"

    paas_id: str = Field(primary_key=True, max_length=40)
    nonce: str = Field(primary_key=True, max_length=64)
    seen_at: datetime = Field(index=True)


class CatalogueItem(SQLModel, table=True):
    __tablename__ = "catalogue"

    med_list_codg: str = Field(primary_key=True, max_length=50)
    name: str = Field(max_length=200)
    category: str = Field(max_length=16)  # drug | device | service | daily_goods
    updated_at: datetime


class RegistryStamp(SQLModel, table=True):
    """How many times a part of the registry (service_layer/context.py) has changed: every admin change bumps its
    part's row in its own transaction, so a replica learns whether to reload by reading one small row, not the
    tables. Parts: `institutions` (institutions and their profiles), `catalogue` (both catalogues)."""

    __tablename__ = "registry_stamps"

    part: str = Field(primary_key=True, max_length=20)
    version: int = Field(sa_type=BIGINT)


class PosMessage(SQLModel, table=True):
    """Every POS message by msgid: its body's hash and the answer given (a repeat gets the same answer).
    A money message (2102, 2103, 2601) is written PENDING with its route before the payer's node is asked, so a
    reversal can find it even when the gateway never learned its outcome; `reversed_by` names the 2601 that
    reversed it. A 2601 for a msgid never seen leaves a row without request_hash: that msgid is refused."""

    __tablename__ = "pos_messages"

    msgid: str = Field(primary_key=True, max_length=30)
    fixmedins_code: str = Field(max_length=12)
    infno: str = Field(max_length=4)
    request_hash: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=8)  # PENDING | DONE
    response: bytes | None = None
    payer_admdvs: str | None = Field(default=None, max_length=6)
    setl_id: str | None = Field(default=None, max_length=40)
    reversed_by: str | None = Field(default=None, max_length=30)
    received_at: datetime
    answered_at: datetime | None = None


class Settlement(SQLModel, table=True):
    """A settlement as the gateway last heard of it from the payer's node (highest `version` wins). Clearing
    events are emitted when it starts or stops taking effect; 3201 sums the ones in effect."""

    __tablename__ = "settlements"
    # 3201's question: an institution's settlements of some days (one range however long its history). One
    # index where each column had its own: a settlement written updates one index fewer.
    __table_args__ = (sa.Index("ix_settlements_institution_day", "fixmedins_code", "settle_day"),)

    setl_id: str = Field(primary_key=True, max_length=40)
    msgid: str = Field(max_length=30)
    mdtrt_id: str = Field(max_length=40)
    fixmedins_code: str = Field(max_length=12)
    pharmacy_admdvs: str = Field(max_length=6)
    psn_no: str = Field(max_length=32)
    payer_admdvs: str = Field(max_length=6)
    insutype: str = Field(max_length=3)
    state: str = Field(max_length=12)  # SETTLED | CANCELLED | REVERSED
    version: int
    medfee_fen: int = Field(sa_type=BIGINT)
    eligible_fen: int = Field(sa_type=BIGINT)
    acct_pay_fen: int = Field(sa_type=BIGINT)
    mulaid_pay_fen: int = Field(sa_type=BIGINT)
    cash_pay_fen: int = Field(sa_type=BIGINT)
    settle_day: str = Field(max_length=10)  # Asia/Shanghai date of settlement, for 3201
    settled_at: datetime
    updated_at: datetime


GATEWAY_TABLES = (Institution, SignIn, SeenNonce, CatalogueItem, RegistryStamp, PosMessage, Settlement,
                  OutboxMessage, InboxMessage, IdempotencyRecord, DeadLetter, *AUDIT_TABLES, *MEDICAL_TABLES)
