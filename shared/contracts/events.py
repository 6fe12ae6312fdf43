"""Versioned Kafka payloads. The name of each class says who speaks: node -> hub, hub -> node."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class TransferAwaitingAcceptance(Payload):
    """Receiver's node -> hub: this province makes receivers accept (YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES), so
    the transfer is held, not credited, until the receiver accepts or `accept_by` (the next 06:00 Asia/Shanghai)
    passes; then the node itself answers CREDITED or REJECTED (NOT_ACCEPTED). The hub waits that long instead of
    cancelling at its normal timeout; a cancel it still sends (the binding ended) is honoured."""

    TYPE: ClassVar[str] = "wallet.transfer.awaiting-acceptance.v1"
    transfer_id: str
    accept_by: datetime


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


class PersonStatusChanged(Payload):
    """Person's home node -> hub, keyed by psn_no: the node (the source of truth for its people) ended the
    person's insurance or moved them to another pooling region of the province. The hub updates its directory;
    with `binding_end_reason` set it ends every binding the person is part of, as giver or relative (DOMAIN.md:
    a binding ends by itself when either party's insurance ends or moves region)."""

    TYPE: ClassVar[str] = "wallet.person.status-changed.v1"
    psn_no: str
    insuplc_admdvs: str
    insured: bool
    pooling_admdvs: str
    previous_pooling_admdvs: str
    binding_end_reason: Literal["INSURANCE_ENDED", "MOVED_REGION"] | None = None
    changed_at: datetime


class PosSettlementRecorded(Payload):
    """Gateway -> hub: a pharmacy settlement of a person insured in another province than the pharmacy took
    effect (CHARGE: the payer's province now owes the pharmacy's province `amount_fen`) or stopped taking effect
    (REFUND: a cancel 2103 or a reversal 2601 gave the money back, so that debt is withdrawn). Only the part paid
    from accounts (`acct_pay` + `acct_mulaid_pay`) is cleared; the cash part went from the patient to the till.

    `ref` is unique per change of the settlement (setl_id and the payer node's version of it): the hub records
    each once, however often it is delivered."""

    TYPE: ClassVar[str] = "pos.settlement.recorded.v1"
    ref: str
    effect: Literal["CHARGE", "REFUND"]
    setl_id: str
    version: int = Field(ge=1)
    msgid: str  # the POS message (2102, 2103 or 2601) whose answer revealed this change
    fixmedins_code: str
    pharmacy_admdvs: str  # the institution's region, e.g. 510100; its province is the creditor
    payer_admdvs: str  # the payer's home province, the debtor
    psn_no: str
    acct_pay_fen: int = Field(ge=0)
    mulaid_pay_fen: int = Field(ge=0)
    amount_fen: int = Field(gt=0)  # acct_pay_fen + mulaid_pay_fen
    occurred_at: datetime

    @model_validator(mode="after")
    def _parts_add_up(self) -> PosSettlementRecorded:
        if self.amount_fen != self.acct_pay_fen + self.mulaid_pay_fen:
            raise ValueError("amount_fen must be acct_pay_fen + mulaid_pay_fen")
        return self


EVENT_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (TransferRequested, TransferCredit, TransferCancel, TransferCreditResult, TransferSettled,
                BindingChanged, PosSettlementRecorded, TransferAwaitingAcceptance, PersonStatusChanged)
}

# Quota and premium payloads live in their own module; registered here so that every consumer knows them.
from shared.contracts.mutual_aid_events import MUTUAL_AID_EVENTS  # noqa: E402

EVENT_TYPES.update({cls.TYPE: cls for cls in MUTUAL_AID_EVENTS})
