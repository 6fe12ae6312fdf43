"""Versioned Kafka payloads. The name of each class says who speaks: node -> hub, hub -> node."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


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

    # Bounded as the replicas' columns are: beyond them a node's database refused the row (a 500 on the hub's
    # push to `bindings:apply`, a dead letter on the event), where a 422 says what is wrong.
    binding_id: str = Field(min_length=1, max_length=40)
    giver_psn_no: str = Field(min_length=1, max_length=32)
    giver_admdvs: str = Field(pattern=r"^[0-9]{6}$")
    relative_psn_no: str = Field(min_length=1, max_length=32)
    relative_admdvs: str = Field(pattern=r"^[0-9]{6}$")
    relative_name_masked: str = Field(max_length=64)
    relation: str = Field(min_length=1, max_length=16)
    state: Literal["PENDING_CONSENT", "ACTIVE", "ENDED"]
    version: int = Field(ge=0, le=2**31 - 1)  # a handful of changes in a binding's life: a 32-bit column
    created_at: AwareDatetime
    ended_reason: str | None = Field(default=None, max_length=64)


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
    amount_fen: int = Field(gt=0)  # acct_pay_fen + mulaid_pay_fen (+ fund_pay_fen)
    occurred_at: datetime
    # Hospitals and clinics (issue 11): the settlement's setting, and what the pooled fund paid, which the payer's
    # province owes the institution's too (fund_pay_sumamt + acct_pay + acct_mulaid_pay). `pharmacy_admdvs` is
    # then the institution's region.
    use: Literal["pharmacy", "outpatient", "inpatient"] = "pharmacy"
    fund_pay_fen: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _parts_add_up(self) -> PosSettlementRecorded:
        if self.amount_fen != self.acct_pay_fen + self.mulaid_pay_fen + self.fund_pay_fen:
            raise ValueError("amount_fen must be acct_pay_fen + mulaid_pay_fen + fund_pay_fen")
        return self


class TransferUnderReview(Payload):
    """Hub -> giver's node (issue 12): a risk rule holds the transfer for review (HELD, reason RISK_REVIEW), or
    the review released it (RELEASED: on its way again). A rejection comes as TransferSettled REFUNDED with reason
    RISK_REJECTED. Keyed by transfer_id, so it stays in order with the transfer's other messages."""

    TYPE: ClassVar[str] = "wallet.transfer.under-review.v1"
    transfer_id: str
    state: Literal["HELD", "RELEASED"]
    reason: str | None = None


class PersonNotice(Payload):
    """Hub -> a person's home node (issue 12): an SMS-style notice for that person (e.g. a transfer to them was
    rejected on review). The node adds it to the person's notifications."""

    TYPE: ClassVar[str] = "wallet.person.notice.v1"
    psn_no: str
    text: str = Field(max_length=200)


class SettlementReported(Payload):
    """Gateway (and, for hospital settlements, whoever records them) -> hub, for supervision and statistics
    (issue 12): a settlement of any province's payer at any institution took effect (CHARGE) or stopped taking
    effect (REFUND: cancel or reversal). Sent through the outbox after the till was answered, so nobody waits
    for it; the hub keeps the newest `version` per setl_id. Nothing here is cleared (see PosSettlementRecorded)."""

    TYPE: ClassVar[str] = "supervision.settlement.reported.v1"
    setl_id: str
    version: int = Field(ge=1)
    effect: Literal["CHARGE", "REFUND"]
    use: Literal["pharmacy", "outpatient", "inpatient"] = "pharmacy"
    infno: str = Field(max_length=4)  # the message whose answer revealed the change (2102, 2103, 2601, 2207 ...)
    fixmedins_code: str
    institution_admdvs: str
    payer_admdvs: str  # the payer's home province
    psn_no: str
    medfee_fen: int = Field(ge=0)
    acct_pay_fen: int = Field(ge=0)
    wallet_pay_fen: int = Field(ge=0)
    quota_pay_fen: int = Field(ge=0)
    cash_pay_fen: int = Field(ge=0)
    settled_at: datetime  # when the settlement was made (the rules' windows count from it)
    occurred_at: datetime  # when this change happened


class AuditCheckpointed(Payload):
    """Any service instance -> hub, at least every 10 s (issue 12): the head of its audit journal
    (shared/audit.py). The hub keeps every distinct head; verification checks the chain still contains them."""

    TYPE: ClassVar[str] = "audit.checkpoint.v1"
    service: str
    head_seq: int = Field(ge=0)
    head_hash: str = Field(min_length=64, max_length=64)
    entries: int = Field(ge=0)
    at: datetime


EVENT_TYPES: dict[str, type[Payload]] = {
    cls.TYPE: cls
    for cls in (TransferRequested, TransferCredit, TransferCancel, TransferCreditResult, TransferSettled,
                BindingChanged, PosSettlementRecorded, TransferAwaitingAcceptance, PersonStatusChanged,
                TransferUnderReview, PersonNotice, SettlementReported, AuditCheckpointed)
}

# Quota and premium payloads live in their own module; registered here so that every consumer knows them.
from shared.contracts.mutual_aid_events import MUTUAL_AID_EVENTS  # noqa: E402

EVENT_TYPES.update({cls.TYPE: cls for cls in MUTUAL_AID_EVENTS})
