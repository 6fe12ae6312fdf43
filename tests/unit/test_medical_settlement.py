"""The hospital visit and settlement state machine (services/province_node/domain/medical_settlement.py): every
transition, and the refusal (with the HIS's message) of every message in a state that does not allow it."""

from __future__ import annotations

import pytest

from services.province_node.domain import medical_settlement as ms
from services.province_node.domain.errors import DomainError
from services.province_node.domain.medical_policy import Setting
from services.province_node.domain.medical_settlement import Effect, SettlementState, Transition, VisitState

V = VisitState
S = SettlementState


def refusal(call: object) -> DomainError:
    assert callable(call)
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value


def test_outpatient_messages_are_22xx_and_the_rest_inpatient() -> None:
    assert [ms.setting_of(infno) for infno in ("2201", "2208", "2301", "2401")] == [
        "outpatient", "outpatient", "inpatient", "inpatient"]


def test_a_visit_starts_registered_or_admitted() -> None:
    assert ms.registered("outpatient") is V.REGISTERED
    assert ms.registered("inpatient") is V.ADMITTED
    assert ms.OPEN_ADMISSION == (V.ADMITTED, V.DISCHARGED)


def test_cancelling_a_registration_or_admission() -> None:
    assert ms.after_cancel_registration("outpatient", "REGISTERED", "D1", settled=False) is V.CANCELLED
    assert ms.after_cancel_registration("inpatient", "ADMITTED", "D1", settled=False) is V.CANCELLED
    refused = refusal(lambda: ms.after_cancel_registration("inpatient", "DISCHARGED", "D1", settled=False))
    assert (refused.code, refused.message) == ("MEDICAL_REFUSED", "visit D1 is DISCHARGED; only a ADMITTED visit can "
                                               "be cancelled (2305 a settlement, then 2405 the discharge)")
    refused = refusal(lambda: ms.after_cancel_registration("outpatient", "CANCELLED", "D1", settled=False))
    assert refused.message == "visit D1 is CANCELLED; only a REGISTERED visit can be cancelled"
    refused = refusal(lambda: ms.after_cancel_registration("outpatient", "REGISTERED", "D1", settled=True))
    assert refused.message == "visit D1 has a settlement in effect; cancel it first (2208)"


def test_discharge_and_its_cancel() -> None:
    assert ms.after_discharge("ADMITTED", "D1") is V.DISCHARGED
    assert refusal(lambda: ms.after_discharge("DISCHARGED", "D1")).message == (
        "visit D1 is DISCHARGED; only an admitted person is discharged")
    assert ms.after_cancel_discharge("DISCHARGED", "D1") is V.ADMITTED
    assert refusal(lambda: ms.after_cancel_discharge("SETTLED", "D1")).message == (
        "visit D1 is settled; cancel the settlement first (2305)")
    assert refusal(lambda: ms.after_cancel_discharge("ADMITTED", "D1")).message == (
        "visit D1 is ADMITTED, not discharged")


def test_visit_info_only_on_a_registered_visit() -> None:
    ms.check_visit_info("REGISTERED", "D1")
    assert refusal(lambda: ms.check_visit_info("CANCELLED", "D1")).message == "visit D1 is CANCELLED"


@pytest.mark.parametrize(("setting", "state", "open_"), [
    ("outpatient", "REGISTERED", True), ("outpatient", "CANCELLED", False),
    ("inpatient", "ADMITTED", True), ("inpatient", "DISCHARGED", True), ("inpatient", "SETTLED", False),
    ("inpatient", "CANCELLED", False),
])
def test_fee_lines_come_and_go_while_the_visit_is_open(setting: Setting, state: str, open_: bool) -> None:
    if open_:
        ms.check_lines_open(setting, state, "D1")
        ms.check_lines_droppable(setting, state, "D1")
        return
    assert refusal(lambda: ms.check_lines_open(setting, state, "D1")).message == (
        f"visit D1 is {state}: no more fee lines")
    assert refusal(lambda: ms.check_lines_droppable(setting, state, "D1")).message == (
        f"visit D1 is {state}" + ("" if setting == "outpatient" else ": its lines are settled"))


def test_what_may_be_settled() -> None:
    ms.check_settleable("outpatient", "REGISTERED", "D1")
    ms.check_settleable("inpatient", "DISCHARGED", "D1")
    assert refusal(lambda: ms.check_settleable("outpatient", "CANCELLED", "D1")).message == (
        "visit D1 is CANCELLED; register first (2201)")
    assert refusal(lambda: ms.check_settleable("inpatient", "ADMITTED", "D1")).message == (
        "visit D1 is not discharged: discharge (2402) before settling")
    assert refusal(lambda: ms.check_settleable("inpatient", "SETTLED", "D1")).message == "visit D1 is SETTLED"


def test_a_settlement_settles_a_stay_and_its_end_discharges_it_again() -> None:
    assert ms.settled() == Transition(S.SETTLED, Effect.CHARGE)
    assert ms.visit_after_settle("inpatient") is V.SETTLED
    assert ms.visit_after_settle("outpatient") is None
    assert ms.visit_after_give_back("inpatient") == (V.SETTLED, V.DISCHARGED)
    assert ms.visit_after_give_back("outpatient") is None


def test_a_cancel_refunds_once_and_a_second_is_refused() -> None:
    assert ms.after_cancel("SETTLED", "S1") == Transition(S.CANCELLED, Effect.REFUND)
    for state in ("CANCELLED", "REVERSED"):
        refused = refusal(lambda state=state: ms.after_cancel(state, "S1"))
        assert (refused.status, refused.code, refused.message) == (
            422, "ALREADY_CANCELLED", f"settlement S1 is {state} already; there is nothing to cancel")


@pytest.mark.parametrize("infno", ["2207", "2304"])
@pytest.mark.parametrize(("state", "expected"), [
    ("SETTLED", Transition(S.REVERSED, Effect.REFUND)),
    ("CANCELLED", Transition(S.REVERSED, Effect.NONE)),  # the cancel gave everything back already
    ("REVERSED", Transition(S.REVERSED, Effect.NONE)),
])
def test_reversing_a_settle(infno: str, state: str, expected: Transition) -> None:
    transition = ms.after_reversal(infno, state)
    assert transition == expected
    assert transition.changes(state) == (state != "REVERSED")


@pytest.mark.parametrize("infno", ["2208", "2305"])
@pytest.mark.parametrize(("state", "expected"), [
    ("CANCELLED", Transition(S.SETTLED, Effect.CHARGE)),
    ("SETTLED", Transition(S.SETTLED, Effect.NONE)),
    ("REVERSED", Transition(S.REVERSED, Effect.NONE)),
])
def test_reversing_a_cancel(infno: str, state: str, expected: Transition) -> None:
    assert ms.after_reversal(infno, state) == expected


def test_a_cancel_is_reversed_only_while_the_visit_could_be_settled() -> None:
    ms.check_cancel_reversible("inpatient", "DISCHARGED", "D1")
    ms.check_cancel_reversible("outpatient", "REGISTERED", "D1")
    assert refusal(lambda: ms.check_cancel_reversible("inpatient", "ADMITTED", "D1")).message == (
        "visit D1 is ADMITTED now; the cancel cannot be reversed")
    assert refusal(lambda: ms.check_cancel_reversible("outpatient", "CANCELLED", "D1")).message == (
        "visit D1 is CANCELLED now; the cancel cannot be reversed")


def test_reversing_an_admission() -> None:
    assert ms.admission_after_reversal("ADMITTED", "D1", settled=False) is V.CANCELLED
    assert ms.admission_after_reversal("DISCHARGED", "D1", settled=False) is V.CANCELLED
    assert ms.admission_after_reversal("CANCELLED", "D1", settled=False) is None
    for state, settled in (("SETTLED", False), ("DISCHARGED", True)):
        assert refusal(lambda s=state, t=settled: ms.admission_after_reversal(
            s, "D1", settled=t)).message == "admission D1 has a settlement in effect; reverse or cancel it first"


def test_only_settles_and_cancels_are_reversed_here() -> None:
    with pytest.raises(AssertionError):
        ms.after_reversal("2401", "SETTLED")


def test_typed_rows_are_their_tables_columns_and_map_to_the_wire_field_by_field() -> None:
    from collections import namedtuple
    from datetime import UTC, datetime

    from services.province_node.adapters import medical_repo
    from services.province_node.service_layer import medical

    at = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    columns = list(medical_repo.SETTLEMENTS.c.keys())
    assert medical_repo.SettlementRow._fields == tuple(columns)
    assert medical_repo.OperationRow._fields == tuple(medical_repo.OPERATIONS.c.keys())
    values: dict[str, object] = {name: f"{name}-value" for name in columns}
    values |= {name: index for index, name in enumerate(columns)
               if name.endswith("_fen") or name in ("version", "year")}
    values |= {"setting": "inpatient", "state": "CANCELLED", "settled_at": at, "updated_at": at}
    row = medical_repo.SettlementRow(**values)  # type: ignore[arg-type]
    settlement = medical._settlement_view(row)
    assert settlement.model_dump() == {name: values[name] for name in type(settlement).model_fields}

    columns = list(medical.LINES.c.keys())
    values = {name: f"{name}-value" for name in columns}
    values |= {name: index for index, name in enumerate(columns) if name.endswith("_fen")}
    values |= {"cnt": "1.5", "daily_goods": True, "chrgitm_lv": "01", "selfpay_prop": "0.1", "created_at": at}
    line = medical._line_view(namedtuple("Row", columns)(**values))
    assert line.model_dump() == {name: values[name] for name in type(line).model_fields}
