"""Versioned Kafka payloads. The name of each class says who speaks: node -> hub, hub -> node."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    TYPE: ClassVar[str]


class TransferRequested(Payload):
    """Giver's node -> hub: the giver's money is already held in flight at the source."""

    TYPE: ClassVar[str] = "wallet.transfer.requested.v1"
    transfer_id: str
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    receiver_psn_no: str
    receiver_admdvs: str
    amount_fen: int = Field(gt=0)
    accepted_at: datetime


class TransferCredit(Payload):
    """Hub -> receiver's node: credit the wallet unless `credit_by` has passed or the transfer was cancelled."""

    TYPE: ClassVar[str] = "wallet.transfer.credit.v1"
    transfer_id: str
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    receiver_psn_no: str
    receiver_admdvs: str
    amount_fen: int = Field(gt=0)
    accepted_at: datetime
    credit_by: datetime


class TransferCancel(Payload):
    """Hub -> receiver's node, after the hub's timeout: never credit this transfer; say whether you already did."""

    TYPE: ClassVar[str] = "wallet.transfer.cancel.v1"
    transfer_id: str
    reason: str


class TransferCreditResult(Payload):
    """Receiver's node -> hub: the one decisive answer for a transfer (to a credit or to a cancel)."""

    TYPE: ClassVar[str] = "wallet.transfer.credit-result.v1"
    transfer_id: str
    outcome: Literal["CREDITED", "REJECTED"]
    reason: str | None = None
    credited_at: datetime | None = None


class TransferSettled(Payload):
    """Hub -> giver's node: finalise the held money (CREDITED) or give it back (REFUNDED)."""

    TYPE: ClassVar[str] = "wallet.transfer.settled.v1"
    transfer_id: str
    outcome: Literal["CREDITED", "REFUNDED"]
    reason: str | None = None
    credited_at: datetime | None = None


class BindingSnapshot(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    relative_psn_no: str
    relative_admdvs: str
    relative_name_masked: str
    relation: str
    state: Literal["PENDING_CONSENT", "ACTIVE", "ENDED"]
    version: int
    created_at: datetime
    ended_reason: str | None = None


class BindingChanged(Payload):
    """Hub -> both parties' nodes: the registry's latest view of a binding (replicas keep the highest version)."""

    TYPE: ClassVar[str] = "wallet.binding.changed.v1"
    binding: BindingSnapshot


EVENT_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (TransferRequested, TransferCredit, TransferCancel, TransferCreditResult, TransferSettled,
                BindingChanged)
}
