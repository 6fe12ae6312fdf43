"""The province node's tables. Balances live on `accounts` and change only through ledger postings
(`ledger_entries` + `ledger_lines`, lines of an entry sum to zero)."""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.province_node.adapters.confirmation_tables import CONFIRMATION_TABLES
from services.province_node.adapters.medical_tables import MEDICAL_TABLES
from services.province_node.adapters.mutual_aid_tables import MUTUAL_AID_TABLES
from services.province_node.adapters.pos_tables import POS_TABLES
from shared.audit import AUDIT_TABLES
from shared.dead_letters import DeadLetter
from shared.messaging_tables import BIGINT, IdempotencyRecord, InboxMessage, OutboxMessage


class Person(SQLModel, table=True):
    __tablename__ = "persons"

    psn_no: str = Field(primary_key=True, max_length=32)
    id_hash: str = Field(unique=True, max_length=64)
    id_no_masked: str = Field(max_length=18)
    name: str = Field(max_length=64)
    phone: str = Field(max_length=20)
    insutype: str = Field(max_length=3)
    pooling_admdvs: str = Field(max_length=6)
    card_no_hash: str | None = Field(default=None, index=True, max_length=64)
    insured: bool = True
    created_at: datetime
    # From the ID number at import (the clear number is not kept): what a till shows in 1101's baseinfo.
    gend: str | None = Field(default=None, max_length=1)
    brdy: date | None = None


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    account_id: str = Field(primary_key=True, max_length=80)
    kind: str = Field(max_length=16)  # PA | WALLET | SYSTEM
    owner_psn_no: str | None = Field(default=None, index=True, max_length=32)
    balance_fen: int = Field(default=0, sa_type=BIGINT)
    opened_at: datetime


class SystemAccountDelta(SQLModel, table=True):
    """A change of a system account's balance not yet folded into its `accounts` row (ledger_repo.py: hot
    accounts). A system account's balance is its row's plus the sum of these."""

    __tablename__ = "system_account_deltas"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    account_id: str = Field(index=True, max_length=80)
    delta_fen: int = Field(sa_type=BIGINT)


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entries"

    entry_id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    kind: str = Field(max_length=32)
    ref: str = Field(index=True, max_length=80)
    posted_at: datetime


class LedgerLine(SQLModel, table=True):
    __tablename__ = "ledger_lines"

    line_id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    entry_id: int = Field(index=True, foreign_key="ledger_entries.entry_id", sa_type=BIGINT)
    account_id: str = Field(index=True, max_length=80, foreign_key="accounts.account_id")
    amount_fen: int = Field(sa_type=BIGINT)


class BindingReplica(SQLModel, table=True):
    """This node's copy of the hub's binding registry (highest version wins)."""

    __tablename__ = "bindings"

    binding_id: str = Field(primary_key=True, max_length=40)
    giver_psn_no: str = Field(index=True, max_length=32)
    giver_admdvs: str = Field(max_length=6)
    relative_psn_no: str = Field(index=True, max_length=32)
    relative_admdvs: str = Field(max_length=6)
    relative_name_masked: str = Field(max_length=64)
    relation: str = Field(max_length=16)
    state: str = Field(max_length=20)
    version: int
    created_at: datetime
    ended_reason: str | None = Field(default=None, max_length=64)


class TransferOut(SQLModel, table=True):
    """A transfer this node's person sent; its money is in IN_FLIGHT until the hub settles it."""

    __tablename__ = "transfers_out"
    # Every accept asks how many the giver sent today (the daily limit): one range of this index, however long
    # the giver's history. It also lists a giver's transfers (its prefix).
    __table_args__ = (sa.Index("ix_transfers_out_giver_day", "giver_psn_no", "accepted_day"),)

    transfer_id: str = Field(primary_key=True, max_length=40)
    binding_id: str = Field(max_length=40)
    giver_psn_no: str = Field(max_length=32)
    receiver_psn_no: str = Field(max_length=32)
    receiver_admdvs: str = Field(max_length=6)
    amount_fen: int = Field(sa_type=BIGINT)
    state: str = Field(max_length=16)  # ACCEPTED | CREDITED | REFUNDED
    reason: str | None = Field(default=None, max_length=64)
    accepted_day: str = Field(max_length=10)  # Asia/Shanghai date, for the daily limit
    accepted_at: datetime
    credited_at: datetime | None = None
    settled_at: datetime | None = None


class TransferIn(SQLModel, table=True):
    """A transfer addressed to this node's person: credited, rejected, or cancelled before it could be; in a
    province where receivers must accept, held (AWAITING_ACCEPTANCE) until accepted or `accept_by` passes."""

    __tablename__ = "transfers_in"
    # The acceptance scan's question: which held transfers are past their accept_by?
    __table_args__ = (sa.Index("ix_transfers_in_state_accept_by", "state", "accept_by"),)

    transfer_id: str = Field(primary_key=True, max_length=40)
    binding_id: str = Field(max_length=40)
    giver_psn_no: str = Field(max_length=32)
    giver_admdvs: str = Field(max_length=6)
    receiver_psn_no: str = Field(index=True, max_length=32)
    amount_fen: int = Field(sa_type=BIGINT)
    state: str = Field(max_length=20)  # CREDITED | REJECTED | CANCELLED | AWAITING_ACCEPTANCE
    reason: str | None = Field(default=None, max_length=64)
    accepted_at: datetime
    credited_at: datetime | None = None
    accept_by: datetime | None = None  # set while AWAITING_ACCEPTANCE: the receiver's deadline


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    psn_no: str = Field(index=True, max_length=32)
    time: datetime
    text: str = Field(max_length=200)


NODE_TABLES = (Person, Account, SystemAccountDelta, LedgerEntry, LedgerLine, BindingReplica, TransferOut,
               TransferIn, Notification, OutboxMessage, InboxMessage, IdempotencyRecord, *POS_TABLES,
               *MUTUAL_AID_TABLES, DeadLetter, *MEDICAL_TABLES, *AUDIT_TABLES, *CONFIRMATION_TABLES)
