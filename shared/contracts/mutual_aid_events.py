"""Versioned payloads of quotas (共济额度) and premiums. Quota messages are keyed by binding_id, so a quota's
grants, spends and mirror states stay in order on one partition end to end (node -> hub -> node)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from shared.contracts.events import Payload


class QuotaSet(Payload):
    """Giver's node -> hub -> relative's node: the quota the giver now grants for `year` (0 closes it).
    The giver's node already holds the money in reserve for any raise; the mirror may not go below what the
    relative has already spent."""

    TYPE: ClassVar[str] = "wallet.quota.set.v1"
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    relative_psn_no: str
    relative_admdvs: str
    year: int = Field(ge=2000, le=2100)
    annual_quota_fen: int = Field(ge=0)
    version: int = Field(ge=1)
    closing: bool = False  # binding ended or year over: the mirror closes at what was spent


class QuotaSpent(Payload):
    """Relative's node -> hub -> giver's node: the relative spent (or, negative, got back) part of a quota.
    The giver's node moves that much from the reserve to clearing; the hub records the obligation."""

    TYPE: ClassVar[str] = "wallet.quota.spent.v1"
    spend_id: str
    binding_id: str
    year: int
    giver_admdvs: str
    relative_admdvs: str
    amount_fen: int  # negative: a cancel or reversal gave it back
    use: Literal["pharmacy", "outpatient", "inpatient", "premium"]  # outpatient / inpatient: at hospitals
    occurred_at: datetime


class QuotaMirrorState(Payload):
    """Relative's node -> hub -> giver's node: the mirror after a change. `annual_quota_fen` is the limit the
    mirror applied, `used_fen` all spent so far; the giver's node releases whatever it still reserves beyond
    what may yet be spent."""

    TYPE: ClassVar[str] = "wallet.quota.mirror-state.v1"
    binding_id: str
    giver_admdvs: str
    relative_admdvs: str
    year: int
    version: int
    annual_quota_fen: int = Field(ge=0)
    used_fen: int = Field(ge=0)
    closed: bool


class PremiumPaid(Payload):
    """Payer's node -> hub -> beneficiary's node: a resident premium paid from a wallet; the beneficiary's
    node turns its reservation into the recorded payment."""

    TYPE: ClassVar[str] = "wallet.premium.paid.v1"
    payment_id: str
    beneficiary_psn_no: str
    beneficiary_admdvs: str
    payer_psn_no: str
    payer_admdvs: str
    year: int
    amount_fen: int = Field(gt=0)
    paid_at: datetime


MUTUAL_AID_EVENTS: tuple[type[Payload], ...] = (QuotaSet, QuotaSpent, QuotaMirrorState, PremiumPaid)
