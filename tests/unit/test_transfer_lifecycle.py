"""The transfer's life at a province node (services/province_node/domain/transfer_lifecycle.py): every allowed
transition with what it does, and every refused or ignored one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import get_args

import pytest

from services.province_node.domain import ledger, notices
from services.province_node.domain import transfer_lifecycle as lifecycle
from services.province_node.domain.errors import DomainError
from services.province_node.domain.transfer_lifecycle import Answer, Closing, ReceivedState, Review, SentState
from shared.contracts.events import TransferCreditResult, TransferSettled, TransferUnderReview

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
GIVER = "110100000000000001"
RECEIVER = "440100000000000002"


# ----------------------------------------------------------------------------------------------- sent


def test_sending_holds_the_amount_in_flight() -> None:
    posting = lifecycle.hold(GIVER, "T1", 30_000)
    assert posting == ledger.Posting("TRANSFER_HOLD", "T1", ((ledger.personal_account(GIVER), -30_000),
                                                             (ledger.IN_FLIGHT, 30_000)))


def test_a_review_holds_an_accepted_transfer_and_a_release_gives_it_back_its_course() -> None:
    assert lifecycle.review_move(Review.HELD) == lifecycle.Move(SentState.ACCEPTED, SentState.HELD)
    assert lifecycle.review_move(Review.RELEASED) == lifecycle.Move(SentState.HELD, SentState.ACCEPTED)
    assert lifecycle.held_reason(None) == "RISK_REVIEW"
    assert lifecycle.held_reason("RULE_X") == "RULE_X"


@pytest.mark.parametrize("state", [SentState.ACCEPTED, SentState.HELD])
def test_closing_credited_moves_the_money_in_flight_on_to_clearing(state: SentState) -> None:
    close = lifecycle.close(state, Closing.CREDITED, transfer_id="T1", giver_psn_no=GIVER, amount_fen=30_000,
                            reason=None)
    assert close == lifecycle.Close(SentState.CREDITED, ledger.Posting(
        "TRANSFER_SETTLE", "T1", ((ledger.IN_FLIGHT, -30_000), (ledger.CLEARING, 30_000))), None)


@pytest.mark.parametrize("state", [SentState.ACCEPTED, SentState.HELD])
def test_closing_refunded_gives_the_money_back_and_tells_the_giver_why(state: SentState) -> None:
    close = lifecycle.close(state, Closing.REFUNDED, transfer_id="T1", giver_psn_no=GIVER, amount_fen=30_000,
                            reason="RISK_REJECTED")
    assert close == lifecycle.Close(SentState.REFUNDED, ledger.Posting(
        "TRANSFER_REFUND", "T1", ((ledger.IN_FLIGHT, -30_000), (ledger.personal_account(GIVER), 30_000))),
        notices.transfer_refunded(30_000, "RISK_REJECTED"))


@pytest.mark.parametrize("state", [SentState.CREDITED, SentState.REFUNDED])
@pytest.mark.parametrize("closing", list(Closing))
def test_a_closed_transfer_is_never_closed_again(state: SentState, closing: Closing) -> None:
    assert lifecycle.close(state, closing, transfer_id="T1", giver_psn_no=GIVER, amount_fen=30_000,
                           reason=None) is None


def test_in_flight_are_exactly_the_states_whose_money_waits() -> None:
    assert {SentState.ACCEPTED, SentState.HELD} == lifecycle.IN_FLIGHT


# ------------------------------------------------------------------------------------------- received


def test_an_arriving_transfer_is_refused_held_or_credited() -> None:
    assert lifecycle.on_arrival("EXPIRED", receivers_must_accept=False) == ReceivedState.REJECTED
    assert lifecycle.on_arrival("EXPIRED", receivers_must_accept=True) == ReceivedState.REJECTED
    assert lifecycle.on_arrival(None, receivers_must_accept=True) == ReceivedState.AWAITING_ACCEPTANCE
    assert lifecycle.on_arrival(None, receivers_must_accept=False) == ReceivedState.CREDITED


def test_the_credit_moves_clearing_into_the_wallet() -> None:
    assert lifecycle.credit_posting("T1", RECEIVER, 30_000) == ledger.Posting(
        "TRANSFER_CREDIT", "T1", ((ledger.CLEARING, -30_000), (ledger.wallet_account(RECEIVER), 30_000)))


def _refusal(*, now: datetime = NOW, insured: bool | None = True, wallet: bool = True,
             ended: bool = False) -> str | None:
    return lifecycle.credit_refusal(now=now, credit_by=NOW, receiver_insured=insured, wallet_open=wallet,
                                    binding_ended=ended)


def test_a_credit_is_refused_for_the_first_reason_that_applies() -> None:
    assert _refusal() is None
    assert _refusal(now=NOW + timedelta(seconds=1), insured=None, wallet=False, ended=True) == "EXPIRED"
    assert _refusal(insured=None, wallet=False, ended=True) == "RECEIVER_UNKNOWN"
    assert _refusal(insured=False, wallet=False, ended=True) == "RECEIVER_NOT_INSURED"
    assert _refusal(wallet=False, ended=True) == "WALLET_NOT_OPEN"
    assert _refusal(ended=True) == "BINDING_NOT_ACTIVE"


def test_the_receiver_accepts_a_held_transfer_before_accept_by() -> None:
    state = ReceivedState.AWAITING_ACCEPTANCE
    assert lifecycle.accept(state, accept_by=NOW + timedelta(hours=1), now=NOW) == ReceivedState.CREDITED
    lifecycle.refuse_acceptance_if_binding_ended(False)


def test_accepting_a_credited_transfer_again_is_harmless() -> None:
    assert lifecycle.accept(ReceivedState.CREDITED, accept_by=NOW, now=NOW + timedelta(days=1)) is None


@pytest.mark.parametrize("state", [ReceivedState.REJECTED, ReceivedState.CANCELLED])
def test_a_rejected_or_cancelled_transfer_cannot_be_accepted(state: ReceivedState) -> None:
    with pytest.raises(DomainError) as refused:
        lifecycle.accept(state, accept_by=NOW + timedelta(hours=1), now=NOW)
    assert (refused.value.code, refused.value.status) == ("TRANSFER_NOT_AWAITING_ACCEPTANCE", 422)


def test_accepting_at_or_after_accept_by_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        lifecycle.accept(ReceivedState.AWAITING_ACCEPTANCE, accept_by=NOW, now=NOW)
    assert refused.value.code == "ACCEPTANCE_EXPIRED"


def test_accepting_on_an_ended_binding_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        lifecycle.refuse_acceptance_if_binding_ended(True)
    assert refused.value.code == "BINDING_NOT_ACTIVE"


def test_accept_by_passing_rejects_the_held_transfer() -> None:
    assert lifecycle.expire() == (ReceivedState.REJECTED, "NOT_ACCEPTED")


def test_the_hubs_cancel_before_arrival_leaves_a_tombstone() -> None:
    answer = lifecycle.after_cancel(None)
    assert answer == lifecycle.CancelAnswer(ReceivedState.CANCELLED, Answer.REJECTED)
    assert answer.decided_by_cancel


def test_the_hubs_cancel_ends_a_held_transfer() -> None:
    answer = lifecycle.after_cancel(ReceivedState.AWAITING_ACCEPTANCE)
    assert answer == lifecycle.CancelAnswer(ReceivedState.CANCELLED, Answer.REJECTED)
    assert answer.decided_by_cancel


def test_the_hubs_cancel_after_the_credit_is_answered_credited() -> None:
    answer = lifecycle.after_cancel(ReceivedState.CREDITED)
    assert answer == lifecycle.CancelAnswer(None, Answer.CREDITED)
    assert not answer.decided_by_cancel


@pytest.mark.parametrize("state", [ReceivedState.REJECTED, ReceivedState.CANCELLED])
def test_the_hubs_cancel_after_a_refusal_repeats_the_refusal(state: ReceivedState) -> None:
    answer = lifecycle.after_cancel(state)
    assert answer == lifecycle.CancelAnswer(None, Answer.REJECTED)
    assert not answer.decided_by_cancel


def test_a_receiver_sees_credited_and_held_transfers_only() -> None:
    assert set(lifecycle.VISIBLE_TO_RECEIVER) == {ReceivedState.CREDITED, ReceivedState.AWAITING_ACCEPTANCE}


def test_the_states_are_the_stored_words_and_the_events_the_wire_words() -> None:
    assert [s.value for s in SentState] == ["ACCEPTED", "HELD", "CREDITED", "REFUNDED"]
    assert [s.value for s in ReceivedState] == ["AWAITING_ACCEPTANCE", "CREDITED", "REJECTED", "CANCELLED"]
    assert [a.value for a in Answer] == list(get_args(TransferCreditResult.model_fields["outcome"].annotation))
    assert [c.value for c in Closing] == list(get_args(TransferSettled.model_fields["outcome"].annotation))
    assert [r.value for r in Review] == list(get_args(TransferUnderReview.model_fields["state"].annotation))
