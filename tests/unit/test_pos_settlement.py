"""The pharmacy settlement's state machine (services/province_node/domain/pos_settlement.py): every transition
of 2102, 2103 and 2601, and the typed rows of adapters/pos_repo.py against their tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.province_node.adapters import pos_repo
from services.province_node.domain.errors import DomainError
from services.province_node.domain.pos_settlement import (
    KIND_OF_INFNO,
    Effect,
    OperationKind,
    SettlementState,
    Transition,
    after_cancel,
    after_reversal,
    settled,
)

SETTLED, CANCELLED, REVERSED = SettlementState.SETTLED, SettlementState.CANCELLED, SettlementState.REVERSED
SETTLE, CANCEL = OperationKind.SETTLE, OperationKind.CANCEL


def test_a_settle_charges_and_leaves_the_settlement_settled() -> None:
    assert settled() == Transition(SETTLED, Effect.CHARGE)


def test_a_cancel_of_a_settled_settlement_refunds_it() -> None:
    transition = after_cancel(SETTLED, "S1")
    assert transition == Transition(CANCELLED, Effect.REFUND)
    assert transition.changes(SETTLED)


def test_a_second_cancel_moves_nothing_and_changes_nothing() -> None:
    transition = after_cancel(CANCELLED, "S1")
    assert transition == Transition(CANCELLED, Effect.NONE)
    assert not transition.changes(CANCELLED)


def test_a_reversed_settlement_cannot_be_cancelled() -> None:
    with pytest.raises(DomainError) as refused:
        after_cancel(REVERSED, "S1")
    assert (refused.value.status, refused.value.code) == (422, "SETTLEMENT_REVERSED")
    assert "settlement S1 was reversed" in refused.value.message


@pytest.mark.parametrize(("original", "state", "expected"), [
    (SETTLE, SETTLED, Transition(REVERSED, Effect.REFUND)),
    # the cancel gave the money back already: void for good, nothing moves
    (SETTLE, CANCELLED, Transition(REVERSED, Effect.NONE)),
    (SETTLE, REVERSED, Transition(REVERSED, Effect.NONE)),
    # undoing a cancel charges the same parts again
    (CANCEL, CANCELLED, Transition(SETTLED, Effect.CHARGE)),
    (CANCEL, SETTLED, Transition(SETTLED, Effect.NONE)),
    (CANCEL, REVERSED, Transition(REVERSED, Effect.NONE)),
])
def test_a_reversal_undoes_what_its_original_did_while_it_is_in_force(
        original: OperationKind, state: SettlementState, expected: Transition) -> None:
    effect = Effect.CHARGE if original is SETTLE else Effect.REFUND
    assert after_reversal(original, effect, False, state) == expected


@pytest.mark.parametrize("original", [SETTLE, CANCEL])
@pytest.mark.parametrize("state", list(SettlementState))
def test_an_original_that_moved_nothing_has_nothing_to_undo(original: OperationKind,
                                                             state: SettlementState) -> None:
    assert after_reversal(original, Effect.NONE, False, state) == Transition(state, Effect.NONE)


@pytest.mark.parametrize("original", [SETTLE, CANCEL])
@pytest.mark.parametrize("state", list(SettlementState))
def test_an_original_is_undone_at_most_once(original: OperationKind, state: SettlementState) -> None:
    effect = Effect.CHARGE if original is SETTLE else Effect.REFUND
    assert after_reversal(original, effect, True, state) == Transition(state, Effect.NONE)


def test_only_settles_and_cancels_are_reversed() -> None:
    assert KIND_OF_INFNO == {"2102": SETTLE, "2103": CANCEL}
    with pytest.raises(AssertionError):
        after_reversal(OperationKind.REVERSE, Effect.NONE, False, SETTLED)


def test_no_sequence_of_messages_leaves_reversed() -> None:
    for transition in (after_reversal(kind, effect, reversed_, REVERSED) for kind in (SETTLE, CANCEL)
                       for effect in Effect for reversed_ in (False, True)):
        assert transition.state is REVERSED


def test_states_and_effects_are_the_wire_and_table_words() -> None:
    assert [state.value for state in SettlementState] == ["SETTLED", "CANCELLED", "REVERSED"]
    assert [effect.value for effect in Effect] == ["CHARGE", "REFUND", "NONE"]
    assert [kind.value for kind in OperationKind] == ["SETTLE", "CANCEL", "REVERSE", "PREEMPTED"]


def test_typed_rows_are_their_tables_columns_in_order() -> None:
    assert pos_repo.PaymentRow._fields == tuple(pos_repo.PAYMENTS.c.keys())
    assert pos_repo.OperationRow._fields == tuple(pos_repo.OPERATIONS.c.keys())


def test_a_payment_row_maps_to_the_wire_field_by_field() -> None:
    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    row = pos_repo.PaymentRow(
        setl_id="S1", msgid="M1", mdtrt_id="D1", psn_no="P1", fixmedins_code="F1", insutype="310",
        state="CANCELLED", version=2, medfee_fen=10_000, eligible_fen=8_000, acct_pay_fen=3_000,
        wallet_pay_fen=2_000, quota_pay_fen=1_000, quota_parts='[["B1", 1000]]', cash_pay_fen=4_000,
        settled_at=at, updated_at=at)
    payment = pos_repo.payment_from_row(row)
    assert payment.model_dump() == {
        "setl_id": "S1", "mdtrt_id": "D1", "msgid": "M1", "psn_no": "P1", "fixmedins_code": "F1",
        "insutype": "310", "state": "CANCELLED", "version": 2, "medfee_fen": 10_000, "eligible_fen": 8_000,
        "acct_pay_fen": 3_000, "wallet_pay_fen": 2_000, "quota_pay_fen": 1_000, "cash_pay_fen": 4_000,
        "settled_at": at}
    assert row.quota_spends() == [("B1", 1000)]
    assert row.settlement_state is CANCELLED
