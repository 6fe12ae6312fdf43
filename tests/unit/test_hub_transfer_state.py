"""The hub's transfer state machine (services/national_hub/domain/transfer_state.py): every allowed transition,
and every event that finds the transfer past the point it applies to and so changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from services.national_hub.domain import transfer_state
from services.national_hub.domain.transfer_state import (
    CancelCause,
    Closing,
    DestinationAnswer,
    Move,
    Review,
    ReviewDecision,
    TransferState,
)
from shared.contracts.events import TransferCreditResult, TransferSettled, TransferUnderReview

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
PAIR = ("110100000000000001", "440100000000000002")


def test_an_arriving_transfer_on_another_binding_or_none_is_refused() -> None:
    assert transfer_state.arrival_refusal(binding_active=False, binding_parties=None,
                                          transfer_parties=PAIR) == "BINDING_NOT_ACTIVE"
    assert transfer_state.arrival_refusal(binding_active=False, binding_parties=PAIR,
                                          transfer_parties=PAIR) == "BINDING_NOT_ACTIVE"
    assert transfer_state.arrival_refusal(binding_active=True, binding_parties=(PAIR[1], PAIR[0]),
                                          transfer_parties=PAIR) == "BINDING_MISMATCH"
    assert transfer_state.arrival_refusal(binding_active=True, binding_parties=PAIR, transfer_parties=PAIR) is None


def test_an_arriving_transfer_is_refunded_held_or_routed() -> None:
    assert transfer_state.on_arrival("BINDING_NOT_ACTIVE", held=True) == TransferState.REFUNDED
    assert transfer_state.on_arrival(None, held=True) == TransferState.HELD
    assert transfer_state.on_arrival(None, held=False) == TransferState.ROUTED


@pytest.mark.parametrize("state", [TransferState.ROUTED, TransferState.CANCEL_REQUESTED])
def test_the_destinations_answer_decides_an_open_transfer(state: TransferState) -> None:
    assert transfer_state.after_result(state, DestinationAnswer.CREDITED) == TransferState.CREDITED
    assert transfer_state.after_result(state, DestinationAnswer.REJECTED) == TransferState.REFUNDED


@pytest.mark.parametrize("state", [TransferState.HELD, TransferState.CREDITED, TransferState.REFUNDED])
@pytest.mark.parametrize("answer", list(DestinationAnswer))
def test_an_answer_for_a_transfer_not_open_decides_nothing(state: TransferState,
                                                           answer: DestinationAnswer) -> None:
    assert transfer_state.after_result(state, answer) is None


def test_the_timeout_asks_to_cancel_a_routed_transfer_only() -> None:
    assert transfer_state.after_timeout(TransferState.ROUTED) == TransferState.CANCEL_REQUESTED
    assert Move(TransferState.ROUTED, TransferState.CANCEL_REQUESTED) == transfer_state.CANCEL_MOVE
    for state in set(TransferState) - {TransferState.ROUTED}:
        assert transfer_state.after_timeout(state) is None, state


def test_a_review_releases_or_rejects_a_held_transfer() -> None:
    assert transfer_state.after_review(TransferState.HELD, ReviewDecision.RELEASE) == Move(TransferState.HELD,
                                                                                           TransferState.ROUTED)
    assert transfer_state.after_review(TransferState.HELD, ReviewDecision.REJECT) == Move(TransferState.HELD,
                                                                                          TransferState.REFUNDED)


@pytest.mark.parametrize("state", set(TransferState) - {TransferState.HELD})
@pytest.mark.parametrize("decision", list(ReviewDecision))
def test_a_review_of_a_transfer_no_longer_held_moves_nothing(state: TransferState,
                                                             decision: ReviewDecision) -> None:
    assert transfer_state.after_review(state, decision) is None


def test_a_closed_transfer_tells_the_giver_credited_or_refunded() -> None:
    assert transfer_state.closing(TransferState.CREDITED) == Closing.CREDITED
    assert transfer_state.closing(TransferState.REFUNDED) == Closing.REFUNDED
    for state in transfer_state.OPEN_STATES | {TransferState.HELD}:
        with pytest.raises(AssertionError):
            transfer_state.closing(state)


def test_only_a_routed_transfer_waits_for_the_receivers_acceptance() -> None:
    assert transfer_state.waits_for_acceptance(TransferState.ROUTED)
    for state in set(TransferState) - {TransferState.ROUTED}:
        assert not transfer_state.waits_for_acceptance(state), state
    margin = timedelta(minutes=10)
    later = NOW + timedelta(hours=20)
    assert transfer_state.deadline_while_awaiting(NOW, later, margin) == later + margin
    extended = later + timedelta(hours=1)
    assert transfer_state.deadline_while_awaiting(extended, later, margin) == extended


def test_a_credited_transfer_between_provinces_leaves_an_obligation() -> None:
    assert transfer_state.owes(TransferState.CREDITED, "110100", "440100")
    assert not transfer_state.owes(TransferState.CREDITED, "440100", "440100")
    assert not transfer_state.owes(TransferState.REFUNDED, "110100", "440100")


def test_the_words_are_the_stored_and_wire_ones() -> None:
    assert [s.value for s in TransferState] == ["ROUTED", "HELD", "CANCEL_REQUESTED", "CREDITED", "REFUNDED"]
    assert [a.value for a in DestinationAnswer] == list(get_args(
        TransferCreditResult.model_fields["outcome"].annotation))
    assert [c.value for c in Closing] == list(get_args(TransferSettled.model_fields["outcome"].annotation))
    assert [r.value for r in Review] == list(get_args(TransferUnderReview.model_fields["state"].annotation))
    assert [c.value for c in CancelCause] == ["TIMEOUT", "BINDING_ENDED"]
