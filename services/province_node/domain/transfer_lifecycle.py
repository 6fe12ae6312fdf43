"""The life of a transfer at a province node, both ends of it (DESIGN.md "Flow of a cross-province transfer").
Pure: the use cases read the row, ask here what happens next, and write what the answer says.

Sent, at the giver's node (`transfers_out`); the money waits in IN_FLIGHT until the hub closes the transfer:

    (send)   --> ACCEPTED                       posting TRANSFER_HOLD: giver's PA -> IN_FLIGHT
    ACCEPTED --hub holds for review--> HELD     (the giver is told; the money stays in flight)
    HELD     --hub releases--> ACCEPTED
    ACCEPTED | HELD --closed CREDITED--> CREDITED   posting IN_FLIGHT -> CLEARING
    ACCEPTED | HELD --closed REFUNDED--> REFUNDED   posting IN_FLIGHT -> giver's PA; the giver is told why

Received, at the receiver's node (`transfers_in`); every end is answered to the hub (TransferCreditResult):

    (arrives) --> CREDITED               posting CLEARING -> wallet; answer CREDITED
              --> REJECTED (reason)      the credit is refused (expired, no wallet, binding ended...); answer REJECTED
              --> AWAITING_ACCEPTANCE    where receivers must accept: held until accept_by
    AWAITING_ACCEPTANCE --receiver accepts--> CREDITED                  (as on arrival)
                        --accept_by passes--> REJECTED (NOT_ACCEPTED)
                        --hub cancels--> CANCELLED (the cancel's reason)
    (never arrived) --hub cancels--> CANCELLED: a tombstone, so a late credit is never applied

The first decision stands: a late or repeated message finds the transfer decided and changes nothing (the
functions answer None), while a person's request that the state does not allow is refused (DomainError)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from services.province_node.domain import ledger, notices
from services.province_node.domain.errors import DomainError


class SentState(StrEnum):
    ACCEPTED = "ACCEPTED"
    HELD = "HELD"  # held at the hub for a risk review; the money stays in flight
    CREDITED = "CREDITED"
    REFUNDED = "REFUNDED"


class ReceivedState(StrEnum):
    AWAITING_ACCEPTANCE = "AWAITING_ACCEPTANCE"
    CREDITED = "CREDITED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class Review(StrEnum):
    """The hub's word on a risk review (TransferUnderReview.state)."""

    HELD = "HELD"
    RELEASED = "RELEASED"


class Closing(StrEnum):
    """The hub's decision that closes a sent transfer (TransferSettled.outcome)."""

    CREDITED = "CREDITED"
    REFUNDED = "REFUNDED"


class Answer(StrEnum):
    """The receiver's node's one decisive answer to the hub (TransferCreditResult.outcome)."""

    CREDITED = "CREDITED"
    REJECTED = "REJECTED"


IN_FLIGHT = frozenset({SentState.ACCEPTED, SentState.HELD})
# What a receiver sees of transfers addressed to them: credited, or waiting for them to accept.
VISIBLE_TO_RECEIVER = (ReceivedState.CREDITED, ReceivedState.AWAITING_ACCEPTANCE)
RISK_REVIEW = "RISK_REVIEW"  # the reason a held transfer shows when the hub gave none
NOT_ACCEPTED = "NOT_ACCEPTED"  # the reason of a transfer whose receiver let accept_by pass


# ----------------------------------------------------------------------------------------------- sent


def hold(giver_psn_no: str, transfer_id: str, amount_fen: int) -> ledger.Posting:
    """Sending: the amount leaves the giver's personal account into IN_FLIGHT (state ACCEPTED)."""
    return ledger.move("TRANSFER_HOLD", transfer_id, ledger.personal_account(giver_psn_no), ledger.IN_FLIGHT,
                       amount_fen)


@dataclass(frozen=True)
class Move:
    """A change of state that the store applies only if the row is still in `from_state` (a guarded UPDATE):
    a late or repeated message then changes nothing."""

    from_state: SentState
    to_state: SentState


def review_move(review: Review) -> Move:
    """HELD takes an ACCEPTED transfer; RELEASED gives a HELD one back its course."""
    if review == Review.HELD:
        return Move(SentState.ACCEPTED, SentState.HELD)
    return Move(SentState.HELD, SentState.ACCEPTED)


def held_reason(reason: str | None) -> str:
    return reason or RISK_REVIEW


@dataclass(frozen=True)
class Close:
    """What closing a sent transfer does: its final state, the posting out of IN_FLIGHT, and for a refund the
    giver's notice."""

    state: SentState
    posting: ledger.Posting
    notice: str | None


def close(state: SentState, closing: Closing, *, transfer_id: str, giver_psn_no: str, amount_fen: int,
          reason: str | None) -> Close | None:
    """The hub decided: credited (the money moves on to CLEARING, what this province owes) or refunded (back to
    the giver). None when the transfer is closed already: closing twice must not move money twice."""
    if state not in IN_FLIGHT:
        return None
    if closing == Closing.CREDITED:
        # The journal kind keeps its stored name (entries written before the glossary say TRANSFER_SETTLE).
        return Close(SentState.CREDITED, ledger.move("TRANSFER_SETTLE", transfer_id, ledger.IN_FLIGHT,
                                                     ledger.CLEARING, amount_fen), None)
    return Close(SentState.REFUNDED,
                 ledger.move("TRANSFER_REFUND", transfer_id, ledger.IN_FLIGHT, ledger.personal_account(giver_psn_no),
                             amount_fen),
                 notices.transfer_refunded(amount_fen, reason))


# ------------------------------------------------------------------------------------------- received


def credit_posting(transfer_id: str, receiver_psn_no: str, amount_fen: int) -> ledger.Posting:
    """The credit, on arrival or on acceptance: CLEARING (what the giver's province owes us) -> the wallet."""
    return ledger.move("TRANSFER_CREDIT", transfer_id, ledger.CLEARING, ledger.wallet_account(receiver_psn_no),
                       amount_fen)


def on_arrival(refusal: str | None, *, receivers_must_accept: bool) -> ReceivedState:
    """A transfer arrives (TransferCredit): refused (REJECTED, with `refusal` as the reason), held for the
    receiver's acceptance, or credited at once."""
    if refusal is not None:
        return ReceivedState.REJECTED
    if receivers_must_accept:
        return ReceivedState.AWAITING_ACCEPTANCE
    return ReceivedState.CREDITED


def credit_refusal(*, now: datetime, credit_by: datetime, receiver_insured: bool | None, wallet_open: bool,
                   binding_ended: bool) -> str | None:
    """Why an arriving transfer cannot be credited, first reason first; None when it can. `receiver_insured`
    is None for a person this node does not know."""
    if now > credit_by:
        return "EXPIRED"
    if receiver_insured is None:
        return "RECEIVER_UNKNOWN"
    if not receiver_insured:
        return "RECEIVER_NOT_INSURED"
    if not wallet_open:
        return "WALLET_NOT_OPEN"
    if binding_ended:
        return "BINDING_NOT_ACTIVE"
    return None


def accept(state: ReceivedState, *, accept_by: datetime | None, now: datetime) -> ReceivedState | None:
    """The receiver accepts a held transfer (before the binding check, which needs a read): CREDITED, or None
    when it was credited already (accepting twice is harmless). Refused when it is not held, or too late."""
    if state == ReceivedState.CREDITED:
        return None
    if state != ReceivedState.AWAITING_ACCEPTANCE:
        raise DomainError("TRANSFER_NOT_AWAITING_ACCEPTANCE", f"the transfer is {state}")
    assert accept_by is not None, "a held transfer has its accept_by"
    if now >= accept_by:
        raise DomainError("ACCEPTANCE_EXPIRED", "the time to accept has passed; the transfer returns to the giver")
    return ReceivedState.CREDITED


def refuse_acceptance_if_binding_ended(binding_ended: bool) -> None:
    """The last check of an acceptance: a binding that ended takes its held transfers back to the giver."""
    if binding_ended:
        raise DomainError("BINDING_NOT_ACTIVE", "the binding has ended; the transfer returns to the giver")


def expire() -> tuple[ReceivedState, str]:
    """accept_by passed with the transfer still held: rejected, so it can no longer be accepted."""
    return ReceivedState.REJECTED, NOT_ACCEPTED


@dataclass(frozen=True)
class CancelAnswer:
    """What the hub's cancel does here: the state to write (None: keep the row as it is) and the answer. The
    answer's reason is the cancel's when the cancel decided, else the one the row already has."""

    write: ReceivedState | None
    answer: Answer

    @property
    def decided_by_cancel(self) -> bool:
        return self.write is not None


def after_cancel(state: ReceivedState | None) -> CancelAnswer:
    """The hub's timeout fired or the binding ended: answer with what happened; if nothing did, make sure
    nothing ever will (`state` None: the transfer has not arrived yet; a tombstone refuses it when it does)."""
    if state is None or state == ReceivedState.AWAITING_ACCEPTANCE:
        return CancelAnswer(ReceivedState.CANCELLED, Answer.REJECTED)
    if state == ReceivedState.CREDITED:
        return CancelAnswer(None, Answer.CREDITED)
    return CancelAnswer(None, Answer.REJECTED)
