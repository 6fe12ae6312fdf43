"""The hub's transfer state machine: the single place where a transfer's fate is decided.

    ROUTED --credit-result CREDITED--> CREDITED
    ROUTED --credit-result REJECTED--> REFUNDED
    ROUTED --timeout--> CANCEL_REQUESTED --answer CREDITED--> CREDITED
                                         --answer REJECTED--> REFUNDED

Issue 12: a transfer that trips a risk rule whose action is `hold` is kept before routing:

    HELD --review releases--> ROUTED (then as above, with a fresh timeout)
    HELD --review rejects--> REFUNDED (reason RISK_REJECTED; nothing was ever sent to the destination)

HELD has no timeout: the hub's timeout scan looks at ROUTED transfers only.

After a timeout the hub does not refund on its own: it asks the destination to cancel, and the destination
(which processes the credit and the cancel in order on one partition) answers with what it actually did. So a
refund is only ever decided once the destination has promised never to credit: credited once or refunded once,
never both."""

from __future__ import annotations

ROUTED = "ROUTED"
HELD = "HELD"
RISK_REVIEW = "RISK_REVIEW"
RISK_REJECTED = "RISK_REJECTED"
CANCEL_REQUESTED = "CANCEL_REQUESTED"
CREDITED = "CREDITED"
REFUNDED = "REFUNDED"
OPEN_STATES = (ROUTED, CANCEL_REQUESTED)
FINAL_STATES = (CREDITED, REFUNDED)


def after_result(state: str, outcome: str) -> str | None:
    """The next state for a destination's answer, or None when the transfer is already decided."""
    if state not in OPEN_STATES:
        return None
    return CREDITED if outcome == "CREDITED" else REFUNDED


def after_timeout(state: str) -> str | None:
    return CANCEL_REQUESTED if state == ROUTED else None


def after_review(state: str, decision: str) -> str | None:
    """The state a review decision moves a HELD transfer to, or None when it is not held (any more)."""
    if state != HELD:
        return None
    return ROUTED if decision == "release" else REFUNDED
