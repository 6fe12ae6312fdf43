"""Bodies of internal HTTP calls (node -> hub, gateway -> hub, gateway -> node). Paths are under /internal/v1 and
need the internal token."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.contracts.events import BindingSnapshot
from shared.money import MAX_AMOUNT_FEN


class InternalModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class DirectoryRegistration(InternalModel):
    """POST /internal/v1/directory/persons: a node registers (or updates) one of its persons."""

    # Bounded as the directory's columns are (beyond them PostgreSQL refused the row: a 500, not a 422).
    id_hash: str = Field(min_length=1, max_length=64)
    id_no_masked: str = Field(min_length=1, max_length=18)
    name_hash: str = Field(min_length=1, max_length=64)
    psn_no: str = Field(min_length=1, max_length=32)
    insuplc_admdvs: str = Field(pattern=r"^[0-9]{6}$")
    insutype: str = Field(min_length=1, max_length=3)
    password_hash: str | None = Field(default=None, max_length=200)
    face_hash: str | None = Field(default=None, max_length=64)
    insured: bool = True
    # keyed_hash(id_hash_key, "card:" + social-security card number): lets a till find the person by card (03).
    card_hash: str | None = Field(default=None, max_length=64)
    # The person's pooling region (统筹区): the hub's statistics compare two persons' (issue 12).
    pooling_admdvs: str | None = Field(default=None, max_length=6)


class DirectoryRegistrationBatch(InternalModel):
    persons: list[DirectoryRegistration] = Field(max_length=10000)


class DirectoryRegistrationResult(InternalModel):
    registered: int


class BindingCreateRequest(InternalModel):
    """POST /internal/v1/bindings: the giver's node asks the hub to verify kinship and open a binding."""

    giver_psn_no: str
    giver_admdvs: str
    giver_id_hash: str
    relative_id_hash: str
    relative_name_hash: str
    relative_name_masked: str
    relation: str
    request_key: str


class BindingActionRequest(InternalModel):
    """POST /internal/v1/bindings/{id}:confirm or :end, on behalf of one party."""

    psn_no: str
    reason: str | None = None


class BindingResponse(InternalModel):
    binding: BindingSnapshot


class BindingLookup(InternalModel):
    """POST /internal/v1/bindings:snapshot (issue 13, confirm-then-send): the giver's node asks for the
    registry's current snapshot of one binding before deciding a transfer or a quota."""

    binding_id: str = Field(min_length=1, max_length=64)


class DirectoryLookup(InternalModel):
    """POST /internal/v1/directory/lookup (gateway -> hub): whose is this ID or social-security card, and where is
    that person insured? Exactly one key; both are keyed hashes, never the clear number."""

    id_hash: str | None = Field(default=None, min_length=64, max_length=64)
    card_hash: str | None = Field(default=None, min_length=64, max_length=64)

    @model_validator(mode="after")
    def _exactly_one_key(self) -> DirectoryLookup:
        if (self.id_hash is None) == (self.card_hash is None):
            raise ValueError("give exactly one of id_hash, card_hash")
        return self


class DirectoryLookupResult(InternalModel):
    psn_no: str
    insuplc_admdvs: str
    insured: bool


# ---- POS payments (gateway -> the payer's home province node, under /internal/v1/pos). Money is integer fen;
# the gateway converts to and from the yuan of the national wire. Every state-changing call is keyed by the
# POS message's msgid and answers a repeat with the stored result.

PosPaymentState = Literal["SETTLED", "CANCELLED", "REVERSED"]


class PosPersonQuery(InternalModel):
    """POST /internal/v1/pos/persons:lookup: exactly one key."""

    psn_no: str | None = Field(default=None, max_length=32)
    id_hash: str | None = Field(default=None, max_length=64)
    card_hash: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _exactly_one_key(self) -> PosPersonQuery:
        if sum(key is not None for key in (self.psn_no, self.id_hash, self.card_hash)) != 1:
            raise ValueError("give exactly one of psn_no, id_hash, card_hash")
        return self


class PosPerson(InternalModel):
    psn_no: str
    name: str
    gend: str | None  # GB/T 2261.1: "1" male, "2" female
    brdy: date | None
    certno_masked: str
    insutype: str
    insuplc_admdvs: str
    pooling_admdvs: str
    insured: bool
    personal_account_fen: int | None  # None: residents have no personal account
    wallet_fen: int | None  # None: no wallet opened
    quota_fen: int  # what the quotas received this year still allow


class PosPaymentRequest(InternalModel):
    """POST /internal/v1/pos/payments:preview (2101, moves nothing) and :settle (2102, keyed by msgid).
    `eligible_fen` is the part of the bill accounts may pay: the gateway applied the catalogue."""

    msgid: str = Field(min_length=30, max_length=30)
    psn_no: str = Field(max_length=32)
    insutype: str = Field(max_length=3)
    fixmedins_code: str = Field(max_length=12)
    medfee_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN)
    eligible_fen: int = Field(ge=0, le=MAX_AMOUNT_FEN)
    use_accounts: bool
    # When the gateway stops waiting: a settle that reaches the node's ledger later is refused unapplied, so an
    # overloaded node drops work nobody waits for instead of charging people the till was told "unknown".
    answer_by: datetime | None = None

    @model_validator(mode="after")
    def _eligible_within_bill(self) -> PosPaymentRequest:
        if self.eligible_fen > self.medfee_fen:
            raise ValueError("eligible_fen cannot exceed medfee_fen")
        return self


class PosCancelRequest(InternalModel):
    """POST /internal/v1/pos/payments:cancel (2103): give every part back where it came from."""

    msgid: str = Field(min_length=30, max_length=30)
    setl_id: str = Field(max_length=40)
    psn_no: str = Field(max_length=32)
    fixmedins_code: str = Field(max_length=12)
    answer_by: datetime | None = None  # as for PosPaymentRequest


class PosReverseRequest(InternalModel):
    """POST /internal/v1/pos/payments:reverse (2601): undo what message `omsgid` did, or nothing, and make sure
    that message can never take effect afterwards."""

    msgid: str = Field(min_length=30, max_length=30)
    omsgid: str = Field(min_length=30, max_length=30)
    oinfno: Literal["2102", "2103"]
    psn_no: str = Field(max_length=32)
    fixmedins_code: str = Field(max_length=12)

    @model_validator(mode="after")
    def _not_itself(self) -> PosReverseRequest:
        refuse_self_reversal(self.msgid, self.omsgid)
        return self


def refuse_self_reversal(msgid: str, omsgid: str | None) -> None:
    """A 2601 cannot undo itself: its msgid would be both the reversal's and the preempted original's."""
    if omsgid == msgid:
        raise ValueError("omsgid names this message itself")


class PosPayment(InternalModel):
    """A settlement as the payer's node holds it. `version` grows with every change of `state`, so a gateway
    that hears about changes out of order keeps the newest."""

    setl_id: str
    mdtrt_id: str
    msgid: str
    psn_no: str
    fixmedins_code: str
    insutype: str
    state: PosPaymentState
    version: int
    medfee_fen: int
    eligible_fen: int
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_pay_fen: int
    cash_pay_fen: int
    settled_at: datetime

    @property
    def mulaid_pay_fen(self) -> int:
        return self.wallet_pay_fen + self.quota_pay_fen


class PosBalances(InternalModel):
    personal_account_fen: int | None
    wallet_fen: int | None
    quota_fen: int


class PosSplitPreview(InternalModel):
    """What :preview answers: the split :settle would make now, nothing moved."""

    psn_no: str
    mdtrt_id: str
    medfee_fen: int
    eligible_fen: int
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_pay_fen: int
    cash_pay_fen: int
    balances_after: PosBalances


class PosPaymentResult(InternalModel):
    """What :settle, :cancel and :reverse answer. `effect` is what this call moved (NONE for a repeat, or a
    reversal that found nothing to undo); `payment` is None only when a reversal found no such message."""

    effect: Literal["CHARGE", "REFUND", "NONE"]
    payment: PosPayment | None
    balances_after: PosBalances


class PremiumReservationRequest(InternalModel):
    """POST /internal/v1/premiums:reserve (node -> hub -> beneficiary's node): hold the (person, year) slot
    while the payer's node debits the wallet."""

    payment_id: str
    beneficiary_id_hash: str
    year: int = Field(ge=2000, le=2100)
    amount_fen: int = Field(gt=0, le=MAX_AMOUNT_FEN)
    payer_psn_no: str
    payer_admdvs: str


class PremiumQuotaRequest(PremiumReservationRequest):
    """POST /internal/v1/premiums:pay-from-quota: the giver pays the relative's premium from the quota."""

    binding_id: str


class PremiumReservation(InternalModel):
    payment_id: str
    beneficiary_psn_no: str
    beneficiary_admdvs: str
    year: int
    amount_fen: int


class LedgerSummary(InternalModel):
    """GET /internal/v1/ledger/summary (a province node; read by conservation checks, tests and the bench).
    `totals_fen`: balances summed per account kind (PA, WALLET, QUOTA, ...), system accounts by name
    (SYS:IN_FLIGHT, SYS:CLEARING, ...); `sum_fen` is their total, 0 in a healthy double-entry ledger;
    `journal_balanced`: every entry's lines sum to zero and every balance equals the sum of its lines."""

    admdvs: str
    totals_fen: dict[str, int]
    sum_fen: int
    journal_balanced: bool
