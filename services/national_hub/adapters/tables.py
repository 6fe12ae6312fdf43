"""The hub's tables: directory, kinship registry, binding registry, transfer routing state, hops for traces,
and the inter-province obligations that clearing nets."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from services.national_hub.adapters.ops_tables import OPS_TABLES
from services.national_hub.adapters.throttle_tables import THROTTLE_TABLES
from shared.audit import AUDIT_TABLES
from shared.dead_letters import DeadLetter
from shared.messaging_tables import BIGINT, IdempotencyRecord, InboxMessage, OutboxMessage


class DirectoryPerson(SQLModel, table=True):
    __tablename__ = "directory_persons"

    id_hash: str = Field(primary_key=True, max_length=64)
    psn_no: str = Field(unique=True, max_length=32)
    id_no_masked: str = Field(max_length=18)
    name_hash: str = Field(max_length=64)
    insuplc_admdvs: str = Field(index=True, max_length=6)
    insutype: str = Field(max_length=3)
    password_hash: str | None = Field(default=None, max_length=200)
    face_hash: str | None = Field(default=None, max_length=64)
    insured: bool = True
    updated_at: datetime
    # Keyed hash of the social-security card number: a till that reads the card (03) finds the holder's province.
    card_hash: str | None = Field(default=None, index=True, max_length=64)
    # The person's pooling region (统筹区), for the statistics' scope (issue 12); NULL if the node did not say.
    pooling_admdvs: str | None = Field(default=None, max_length=6)


class KinshipFact(SQLModel, table=True):
    """b is `relation` of a (户籍/民政 data, imported by operators)."""

    __tablename__ = "kinship_facts"

    id_hash_a: str = Field(primary_key=True, max_length=64)
    id_hash_b: str = Field(primary_key=True, max_length=64)
    relation: str = Field(primary_key=True, max_length=16)
    imported_at: datetime


class Binding(SQLModel, table=True):
    __tablename__ = "bindings_registry"

    binding_id: str = Field(primary_key=True, max_length=40)
    request_key: str = Field(unique=True, max_length=240)
    giver_psn_no: str = Field(index=True, max_length=32)
    giver_admdvs: str = Field(max_length=6)
    relative_psn_no: str = Field(index=True, max_length=32)
    relative_admdvs: str = Field(max_length=6)
    relative_name_masked: str = Field(max_length=64)
    relation: str = Field(max_length=16)
    state: str = Field(max_length=20)
    version: int
    created_at: datetime
    updated_at: datetime
    ended_reason: str | None = Field(default=None, max_length=64)


class HubTransfer(SQLModel, table=True):
    __tablename__ = "hub_transfers"
    # The high-frequency rule counts one giver's and one receiver's recent transfers on every transfer. The
    # timeout scan and a binding's end look for the few transfers still ROUTED (past their deadline): one
    # range of (state, deadline_at), which every insert and change of state also keeps up to date.
    __table_args__ = (sa.Index("ix_hub_transfers_giver_accepted", "giver_psn_no", "accepted_at"),
                      sa.Index("ix_hub_transfers_receiver_accepted", "receiver_psn_no", "accepted_at"),
                      sa.Index("ix_hub_transfers_state_deadline", "state", "deadline_at"))

    transfer_id: str = Field(primary_key=True, max_length=40)
    binding_id: str = Field(max_length=40)
    giver_psn_no: str = Field(max_length=32)
    giver_admdvs: str = Field(max_length=6)
    receiver_psn_no: str = Field(max_length=32)
    receiver_admdvs: str = Field(max_length=6)
    amount_fen: int = Field(sa_type=BIGINT)
    state: str = Field(max_length=20)  # ROUTED | HELD | CANCEL_REQUESTED | CREDITED | REFUNDED
    reason: str | None = Field(default=None, max_length=64)
    accepted_at: datetime
    routed_at: datetime
    deadline_at: datetime
    decided_at: datetime | None = None


class TransferHop(SQLModel, table=True):
    __tablename__ = "transfer_hops"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    transfer_id: str = Field(index=True, max_length=40)
    hop: str = Field(max_length=40)
    service: str = Field(max_length=40)
    at: datetime


class ClearingObligation(SQLModel, table=True):
    """`debtor_admdvs` owes `creditor_admdvs` this amount (the giver's or payer's province pays)."""

    __tablename__ = "clearing_obligations"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    kind: str = Field(max_length=16)  # TRANSFER | POS | PREMIUM
    ref: str = Field(unique=True, max_length=64)
    debtor_admdvs: str = Field(max_length=6)
    creditor_admdvs: str = Field(max_length=6)
    amount_fen: int = Field(sa_type=BIGINT)
    created_at: datetime
    window_id: int | None = Field(default=None, index=True, sa_type=BIGINT)


HUB_TABLES = (*OPS_TABLES, DirectoryPerson, KinshipFact, Binding, HubTransfer, TransferHop, ClearingObligation,
              OutboxMessage, InboxMessage, IdempotencyRecord, DeadLetter, *AUDIT_TABLES, *THROTTLE_TABLES)
