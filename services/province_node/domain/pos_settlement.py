"""The life of a pharmacy settlement (POS.md; API.md "POS API"), as data: its states, what each message does
to it, and what money that moves. No I/O: the use cases (service_layer/pos_payments.py) lock the row, ask here,
then move the money and write the new state.

    2102 settle ──► SETTLED ──2103 cancel──► CANCELLED
                       │  ▲                     │
          2601 of the  │  └──2601 of the 2103───┘ (charges the same parts again)
             2102      ▼                        │ 2601 of the 2102 (the cancel gave the money back)
                    REVERSED ◄──────────────────┘

REVERSED is final. A message's *effect* is what it moved: CHARGE made the settlement take effect, REFUND ended
that, NONE changed no money (a repeat, a second cancel, a reversal that found nothing to undo). It is stored per
message, so a reversal knows whether its original has anything to undo, and undoes it at most once."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from services.province_node.domain.errors import DomainError


class SettlementState(StrEnum):
    SETTLED = "SETTLED"
    CANCELLED = "CANCELLED"
    REVERSED = "REVERSED"


class Effect(StrEnum):
    CHARGE = "CHARGE"
    REFUND = "REFUND"
    NONE = "NONE"


class OperationKind(StrEnum):
    """What a msgid in the operation log was: a settle, a cancel, a reversal, or PREEMPTED (reversed before it
    arrived: it can never take effect)."""

    SETTLE = "SETTLE"
    CANCEL = "CANCEL"
    REVERSE = "REVERSE"
    PREEMPTED = "PREEMPTED"


# What each kind of original message is called on the wire, for 2601's `oinfno`.
KIND_OF_INFNO: dict[str, OperationKind] = {"2102": OperationKind.SETTLE, "2103": OperationKind.CANCEL}


class Transition(NamedTuple):
    """The settlement's state after a message, and the money that message moves to get there (CHARGE: the
    parts it was paid from are taken again; REFUND: they go back; NONE: nothing moves)."""

    state: SettlementState
    effect: Effect

    def changes(self, before: SettlementState) -> bool:
        """Whether the settlement row is written (a new state and version)."""
        return self.state != before


def settled() -> Transition:
    """2102: a new settlement, its parts charged."""
    return Transition(SettlementState.SETTLED, Effect.CHARGE)


def after_cancel(state: SettlementState, setl_id: str) -> Transition:
    """2103: every part back where it came from; cancelling a cancelled settlement again moves nothing."""
    if state == SettlementState.REVERSED:
        raise DomainError("SETTLEMENT_REVERSED", f"settlement {setl_id} was reversed; nothing to cancel")
    if state == SettlementState.SETTLED:
        return Transition(SettlementState.CANCELLED, Effect.REFUND)
    return Transition(state, Effect.NONE)


# 2601: (kind of the original message, state of its settlement now) -> what undoing the original does.
_UNDO: dict[tuple[OperationKind, SettlementState], Transition] = {
    (OperationKind.SETTLE, SettlementState.SETTLED): Transition(SettlementState.REVERSED, Effect.REFUND),
    # The cancel already gave the money back; the settlement is now void for good.
    (OperationKind.SETTLE, SettlementState.CANCELLED): Transition(SettlementState.REVERSED, Effect.NONE),
    (OperationKind.SETTLE, SettlementState.REVERSED): Transition(SettlementState.REVERSED, Effect.NONE),
    # Undoing a cancel charges the same parts again; if they have been spent since, the ledger's guard refuses
    # (INSUFFICIENT_FUNDS) and nothing changes.
    (OperationKind.CANCEL, SettlementState.CANCELLED): Transition(SettlementState.SETTLED, Effect.CHARGE),
    (OperationKind.CANCEL, SettlementState.SETTLED): Transition(SettlementState.SETTLED, Effect.NONE),
    (OperationKind.CANCEL, SettlementState.REVERSED): Transition(SettlementState.REVERSED, Effect.NONE),
}


def after_reversal(original: OperationKind, original_effect: Effect, already_reversed: bool,
                   state: SettlementState) -> Transition:
    """2601 of a message that reached this node: only a message that changed its settlement has something to
    undo, and only once."""
    assert original in (OperationKind.SETTLE, OperationKind.CANCEL), original
    if already_reversed or original_effect == Effect.NONE:
        return Transition(state, Effect.NONE)
    return _UNDO[original, state]
