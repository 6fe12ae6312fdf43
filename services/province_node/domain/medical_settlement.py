"""The life of a hospital or clinic visit and of its settlements (API.md "Medical institutions"; HOSPITAL.md),
as data and pure transitions: which message may move which state where, and what money that moves. No I/O: the
use cases (service_layer/medical.py) lock the person, the visit and the settlement, ask here, then write.

Visits:

    outpatient  2201 ──► REGISTERED ──2202──► CANCELLED      (2203 changes its med_type; its batches are
                                                               settled 2207 and cancelled 2208 one by one)
    inpatient   2401 ──► ADMITTED ──2402──► DISCHARGED ──2304──► SETTLED
                           │   ▲──2405──────┘  ▲──────2305───────┘
                           └──2404, or 2601 of the 2401──► CANCELLED

Settlements (one per outpatient batch, one per stay): SETTLED ──2208/2305──► CANCELLED; 2601 of the settle
makes either REVERSED (final), giving the money back if it was still SETTLED; 2601 of the cancel charges the
same parts again (SETTLED) while the visit still allows it. A refusal is a DomainError with the message the HIS
is shown (code MEDICAL_REFUSED unless named)."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from services.province_node.domain.errors import DomainError
from services.province_node.domain.medical_policy import Setting
from services.province_node.domain.pos_settlement import Effect, SettlementState

__all__ = ["Effect", "SettlementState", "Transition", "VisitState"]


def refused(message: str, code: str = "MEDICAL_REFUSED") -> DomainError:
    return DomainError(code, message)


class VisitState(StrEnum):
    REGISTERED = "REGISTERED"  # outpatient
    ADMITTED = "ADMITTED"  # inpatient
    DISCHARGED = "DISCHARGED"  # inpatient
    SETTLED = "SETTLED"  # inpatient: the stay is settled whole
    CANCELLED = "CANCELLED"


# An inpatient visit in one of these is an open admission: the person cannot be admitted elsewhere.
OPEN_ADMISSION = (VisitState.ADMITTED, VisitState.DISCHARGED)


def setting_of(infno: str) -> Setting:
    """22xx are outpatient messages, 23xx and 24xx inpatient."""
    return "outpatient" if infno.startswith("22") else "inpatient"


# ------------------------------------------------------------------------------------------------ visits


def registered(setting: Setting) -> VisitState:
    """2201 / 2401: the state a new visit starts in."""
    return VisitState.REGISTERED if setting == "outpatient" else VisitState.ADMITTED


def after_cancel_registration(setting: Setting, state: str, mdtrt_id: str, *, settled: bool) -> VisitState:
    """2202 (outpatient) and 2404 (inpatient): only while nothing is settled (and, inpatient, not discharged)."""
    expected = registered(setting)
    if state != expected:
        raise refused(f"visit {mdtrt_id} is {state}; only a {expected} visit can be cancelled"
                      + ("" if setting == "outpatient" else " (2305 a settlement, then 2405 the discharge)"))
    if settled:
        raise refused(f"visit {mdtrt_id} has a settlement in effect; cancel it first (2208)")
    return VisitState.CANCELLED


def check_visit_info(state: str, mdtrt_id: str) -> None:
    """2203: only a registered outpatient visit takes its med_type (its state does not change)."""
    if state != VisitState.REGISTERED:
        raise refused(f"visit {mdtrt_id} is {state}")


def after_discharge(state: str, mdtrt_id: str) -> VisitState:
    """2402."""
    if state != VisitState.ADMITTED:
        raise refused(f"visit {mdtrt_id} is {state}; only an admitted person is discharged")
    return VisitState.DISCHARGED


def after_cancel_discharge(state: str, mdtrt_id: str) -> VisitState:
    """2405."""
    if state == VisitState.SETTLED:
        raise refused(f"visit {mdtrt_id} is settled; cancel the settlement first (2305)")
    if state != VisitState.DISCHARGED:
        raise refused(f"visit {mdtrt_id} is {state}, not discharged")
    return VisitState.ADMITTED


def check_lines_open(setting: Setting, state: str, mdtrt_id: str) -> None:
    """2204 / 2301: fee lines are added to a registered outpatient visit, or a stay not settled yet."""
    allowed = (VisitState.REGISTERED,) if setting == "outpatient" else OPEN_ADMISSION
    if state not in allowed:
        raise refused(f"visit {mdtrt_id} is {state}: no more fee lines")


def check_lines_droppable(setting: Setting, state: str, mdtrt_id: str) -> None:
    """2205 / 2302: lines are dropped while the visit is where they could be added."""
    if setting == "outpatient":
        if state != VisitState.REGISTERED:
            raise refused(f"visit {mdtrt_id} is {state}")
    elif state not in OPEN_ADMISSION:
        raise refused(f"visit {mdtrt_id} is {state}: its lines are settled")


def check_settleable(setting: Setting, state: str, mdtrt_id: str) -> None:
    """2206/2207 (outpatient: a registered visit) and 2303/2304 (inpatient: after discharge)."""
    if setting == "outpatient" and state != VisitState.REGISTERED:
        raise refused(f"visit {mdtrt_id} is {state}; register first (2201)")
    if setting == "inpatient":
        if state == VisitState.ADMITTED:
            raise refused(f"visit {mdtrt_id} is not discharged: discharge (2402) before settling")
        if state != VisitState.DISCHARGED:
            raise refused(f"visit {mdtrt_id} is {state}")


def visit_after_settle(setting: Setting) -> VisitState | None:
    """The visit's new state when a settlement takes effect (None: unchanged; an outpatient visit goes on)."""
    return VisitState.SETTLED if setting == "inpatient" else None


def visit_after_give_back(setting: Setting) -> tuple[VisitState, VisitState] | None:
    """(from, to) for the visit when a settlement stops taking effect: a settled stay is discharged again."""
    return (VisitState.SETTLED, VisitState.DISCHARGED) if setting == "inpatient" else None


def admission_after_reversal(state: str, mdtrt_id: str, *, settled: bool) -> VisitState | None:
    """2601 of a 2401: the admission cancelled, unless a settlement is in effect (None: cancelled already)."""
    if state == VisitState.SETTLED or settled:
        raise refused(f"admission {mdtrt_id} has a settlement in effect; reverse or cancel it first")
    if state == VisitState.CANCELLED:
        return None
    return VisitState.CANCELLED


# ------------------------------------------------------------------------------------------------ settlements


class Transition(NamedTuple):
    """A settlement's state after a message, and the money that moves to get there."""

    state: SettlementState
    effect: Effect

    def changes(self, before: str) -> bool:
        return self.state != before


SETTLES = ("2207", "2304")
CANCELS = ("2208", "2305")


def settled() -> Transition:
    """2207 / 2304: a new settlement, every part charged (fund, accounts, quotas, accumulators)."""
    return Transition(SettlementState.SETTLED, Effect.CHARGE)


def after_cancel(state: str, setl_id: str) -> Transition:
    """2208 / 2305: every part back; a second cancel is refused (unlike a pharmacy's 2103)."""
    if state != SettlementState.SETTLED:
        raise refused(f"settlement {setl_id} is {state} already; there is nothing to cancel", "ALREADY_CANCELLED")
    return Transition(SettlementState.CANCELLED, Effect.REFUND)


def after_reversal(original_infno: str, state: str) -> Transition:
    """2601 of a settle (2207/2304) or of a cancel (2208/2305) that has not been reversed yet. Undoing a cancel
    also needs the visit to allow it (`check_cancel_reversible`) and the accounts to hold the money again (the
    ledger's guard)."""
    assert original_infno in SETTLES + CANCELS, original_infno
    current = SettlementState(state)
    if original_infno in SETTLES:
        if current == SettlementState.SETTLED:
            return Transition(SettlementState.REVERSED, Effect.REFUND)
        # The cancel gave everything back already; the settlement is now void for good.
        return Transition(SettlementState.REVERSED, Effect.NONE)
    if current == SettlementState.CANCELLED:
        return Transition(SettlementState.SETTLED, Effect.CHARGE)
    return Transition(current, Effect.NONE)


def check_cancel_reversible(setting: Setting, visit_state: str, mdtrt_id: str) -> None:
    """Undoing a cancel settles again: the visit must still be where a settle could be made."""
    needed = VisitState.DISCHARGED if setting == "inpatient" else VisitState.REGISTERED
    if visit_state != needed:
        raise refused(f"visit {mdtrt_id} is {visit_state} now; the cancel cannot be reversed")
