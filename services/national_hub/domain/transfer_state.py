"""The hub's transfer state machine: the single place where a transfer's fate is decided. Pure: the use cases
(service_layer/transfers.py, holds.py) read the row, ask here, and write what the answer says.

    (arrives) --binding not active, or not this pair's--> REFUNDED (BINDING_NOT_ACTIVE | BINDING_MISMATCH)
              --a risk rule holds it--> HELD (RISK_REVIEW)
              --else--> ROUTED (sent on to the destination, with a deadline)
    ROUTED --credit-result CREDITED--> CREDITED
    ROUTED --credit-result REJECTED--> REFUNDED
    ROUTED --timeout, or the binding ended--> CANCEL_REQUESTED --answer CREDITED--> CREDITED
                                                               --answer REJECTED--> REFUNDED
    HELD --review releases--> ROUTED (then as above, with a fresh timeout)
    HELD --review rejects--> REFUNDED (reason RISK_REJECTED; nothing was ever sent to the destination)

HELD has no timeout: the hub's timeout scan looks at ROUTED transfers only. A transfer reaching CREDITED or
REFUNDED is *closed*: the giver's node is told (TransferSettled), and moves the money in flight on or back.

After a timeout the hub does not refund on its own: it asks the destination to cancel, and the destination
(which processes the credit and the cancel in order on one partition) answers with what it actually did. So a
refund is only ever decided once the destination has promised never to credit: credited once or refunded once,
never both. Every function answers None when the event finds the transfer past the point it applies to: a late
or repeated message, or a decision another replica made first, changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class TransferState(StrEnum):
    ROUTED = "ROUTED"
    HELD = "HELD"
    CANCEL_REQUESTED = "CANCEL_REQUESTED"
    CREDITED = "CREDITED"
    REFUNDED = "REFUNDED"


class DestinationAnswer(StrEnum):
    """The destination's one decisive answer (TransferCreditResult.outcome)."""

    CREDITED = "CREDITED"
    REJECTED = "REJECTED"


class Closing(StrEnum):
    """What the giver's node is told when the transfer closes (TransferSettled.outcome)."""

    CREDITED = "CREDITED"
    REFUNDED = "REFUNDED"


class Review(StrEnum):
    """What the giver's node is told of a risk review (TransferUnderReview.state)."""

    HELD = "HELD"
    RELEASED = "RELEASED"


class ReviewDecision(StrEnum):
    RELEASE = "release"
    REJECT = "reject"


class CancelCause(StrEnum):
    """Why the hub asks the destination to cancel; the value is the cancel's reason on the wire."""

    TIMEOUT = "TIMEOUT"
    BINDING_ENDED = "BINDING_ENDED"


OPEN_STATES = frozenset({TransferState.ROUTED, TransferState.CANCEL_REQUESTED})
FINAL_STATES = frozenset({TransferState.CREDITED, TransferState.REFUNDED})
RISK_REVIEW = "RISK_REVIEW"
RISK_REJECTED = "RISK_REJECTED"
BINDING_NOT_ACTIVE = "BINDING_NOT_ACTIVE"
BINDING_MISMATCH = "BINDING_MISMATCH"


@dataclass(frozen=True)
class Move:
    """A change the store applies only while the row is still in `from_state` (a state-guarded UPDATE)."""

    from_state: TransferState
    to_state: TransferState


def arrival_refusal(*, binding_active: bool, binding_parties: tuple[str, str] | None,
                    transfer_parties: tuple[str, str]) -> str | None:
    """Why an arriving transfer is refunded at once, or None. `binding_parties` is (giver, relative) of the
    binding it names, None when the hub has no such binding."""
    if binding_parties is None or not binding_active:
        return BINDING_NOT_ACTIVE
    if binding_parties != transfer_parties:
        return BINDING_MISMATCH
    return None


def on_arrival(refusal: str | None, *, held: bool) -> TransferState:
    """A transfer arrives from the giver's node: refunded (refused), held for a review, or routed."""
    if refusal is not None:
        return TransferState.REFUNDED
    return TransferState.HELD if held else TransferState.ROUTED


def after_result(state: TransferState, answer: DestinationAnswer) -> TransferState | None:
    """The next state for a destination's answer, or None when the transfer is already decided."""
    if state not in OPEN_STATES:
        return None
    return TransferState.CREDITED if answer == DestinationAnswer.CREDITED else TransferState.REFUNDED


def after_timeout(state: TransferState) -> TransferState | None:
    """The timeout or a binding's end asks the destination to cancel a ROUTED transfer; None for any other."""
    return TransferState.CANCEL_REQUESTED if state == TransferState.ROUTED else None


# The guarded UPDATE that asks for a cancel (the scan read the row as ROUTED; a result decided since keeps it).
CANCEL_MOVE = Move(TransferState.ROUTED, TransferState.CANCEL_REQUESTED)


def after_review(state: TransferState, decision: ReviewDecision) -> Move | None:
    """The move a review decision makes of a HELD transfer (to ROUTED or REFUNDED; the store applies it only
    while the row is still HELD), or None when it is not held (any more)."""
    if state != TransferState.HELD:
        return None
    return Move(TransferState.HELD,
                TransferState.ROUTED if decision == ReviewDecision.RELEASE else TransferState.REFUNDED)


def closing(state: TransferState) -> Closing:
    """What the giver's node is told of a closed transfer."""
    assert state in FINAL_STATES, state
    return Closing.CREDITED if state == TransferState.CREDITED else Closing.REFUNDED


def waits_for_acceptance(state: TransferState) -> bool:
    """The destination holds the transfer for its receiver: only a ROUTED transfer's deadline moves (one the
    timeout or a binding's end already asked to cancel keeps its course: the destination honours the cancel)."""
    return state == TransferState.ROUTED


def deadline_while_awaiting(deadline_at: datetime, accept_by: datetime, margin: timedelta) -> datetime:
    """The hub's timeout waits for the receiver's accept_by, plus a margin for the destination's own rejection to
    arrive; only a destination silent past that gets the cancel."""
    return max(deadline_at, accept_by + margin)


def owes(state: TransferState, giver_admdvs: str, receiver_admdvs: str) -> bool:
    """A credited transfer between two provinces leaves an obligation (the giver's province owes the
    receiver's) for clearing to net; within one province nothing is owed."""
    return state == TransferState.CREDITED and giver_admdvs != receiver_admdvs
