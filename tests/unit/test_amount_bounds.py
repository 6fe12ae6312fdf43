"""Amounts have bounds (API.md "Conventions"): above MAX_AMOUNT_FEN (10^12 fen) on the citizen, admin and operator
APIs, above MAX_WIRE_YUAN (10^10 yuan) on the national wire, and counts beyond decimal(16,4) are refused with a
clear reason, never a 500. Numbers on the wire are plain decimals: exponent notation, NaN and Infinity are
refused, so four characters ("1e30") cannot make a 31-digit number. Pure; the HTTP side of the citizen and admin
bounds is in tests/integration/test_amount_bounds_api.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.pharmacy_gateway.domain import wire
from services.pharmacy_gateway.domain.bill import parse_bill
from services.pharmacy_gateway.domain.wire import Refused
from shared.contracts.internal_api import PosPaymentRequest, PremiumReservationRequest
from shared.money import MAX_AMOUNT_FEN, MAX_WIRE_YUAN, InvalidAmount, above_max_amount, yuan_to_fen

MSGID = "H64010200001" + "20250115100000" + "0001"


def drug_line(cnt: Any, pric: Any, fee: Any) -> dict[str, Any]:
    return {"feedetl_sn": "1", "med_list_codg": "DRUG", "medins_list_codg": "", "cnt": cnt, "pric": pric,
            "det_item_fee_sumamt": fee}


def test_the_two_bounds_are_one_amount() -> None:
    assert MAX_AMOUNT_FEN == 10**12
    assert Decimal(10**10) == MAX_WIRE_YUAN
    assert yuan_to_fen(MAX_WIRE_YUAN) == MAX_AMOUNT_FEN
    # Every amount within the bound goes out exactly as a JSON number of yuan (below 2^53 fen).
    assert MAX_AMOUNT_FEN < 2**53
    assert wire.yuan(MAX_AMOUNT_FEN) == 1e10


# ------------------------------------------------------------------------------------------ the national wire


@pytest.mark.parametrize("value", [
    "10000000000.01", Decimal("10000000000.01"),  # 10^10 yuan + 1 fen
    "-10000000000.01",
    Decimal("99999999999999.99"), "1" + "0" * 40,
    Decimal("1e30"), "1e30", "1E+30", 1e30,  # exponent notation: refused whatever its value
    "1e2", Decimal("1E+2"),
    "NaN", "Infinity", "-Infinity", "inf", float("nan"), float("inf"),
    "1_000", " 1 000", "0x10",
])
def test_wire_yuan_beyond_the_bound_or_not_plain_decimals_are_refused(value: object) -> None:
    with pytest.raises(InvalidAmount):
        yuan_to_fen(value)
    with pytest.raises(Refused):
        wire.amount_fen(value, "medfee_sumamt")


def test_the_bound_names_itself() -> None:
    with pytest.raises(Refused, match=r"medfee_sumamt: beyond the bound of 10000000000 yuan"):
        wire.amount_fen("10000000000.01", "medfee_sumamt")
    with pytest.raises(Refused, match="no exponent"):
        wire.amount_fen("1e2", "pric")


@pytest.mark.parametrize("value", ["10000000000", "10000000000.00", Decimal("9999999999.99"), "0.01", 12.3, 7])
def test_wire_yuan_up_to_the_bound_pass(value: object) -> None:
    assert 0 < wire.amount_fen(value, "x") <= MAX_AMOUNT_FEN


@pytest.mark.parametrize(("value", "reason"), [
    ("1e30", "plain decimal"), (Decimal("1e30"), "plain decimal"), ("1E3", "plain decimal"),
    ("NaN", "positive number"), ("Infinity", "positive number"), ("-Infinity", "positive number"),
    ("1000000000000", "below"), (10**12, "below"), (10**40, "below"), ("1_0", "plain decimal"),
])
def test_counts_beyond_decimal_16_4_or_not_plain_are_refused(value: object, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        wire.count(value, "drugdetail[0].cnt")


def test_the_largest_count_passes() -> None:
    assert wire.count("999999999999.9999", "cnt") == Decimal("999999999999.9999")


@pytest.mark.parametrize(("medfee", "line", "reason"), [
    # cnt "1e30": used to reach Decimal.quantize and escape as decimal.InvalidOperation (an internal error).
    ("10.00", drug_line("1e30", "10.00", "10.00"), "cnt must be a plain decimal"),
    ("10.00", drug_line(Decimal("1E+30"), "10.00", "10.00"), "cnt must be a plain decimal"),
    ("10.00", drug_line("NaN", "10.00", "10.00"), "cnt must be a positive number"),
    ("10.00", drug_line("Infinity", "10.00", "10.00"), "cnt must be a positive number"),
    # A huge line fee (and a bill that adds up to it): refused by the bound, not by the sum.
    ("1" + "0" * 20, drug_line("1", "1" + "0" * 20, "1" + "0" * 20), "medfee_sumamt: beyond the bound"),
    ("10.00", drug_line("1", "10.00", "1" + "0" * 20), "det_item_fee_sumamt: beyond the bound"),
    ("10000000000.01", drug_line("1", "10000000000.01", "10000000000.01"), "medfee_sumamt: beyond the bound"),
    ("10.00", drug_line("1", "10000000000.01", "10.00"), "pric: beyond the bound"),
    ("10.00", drug_line("1", "10.00", "1e1"), "det_item_fee_sumamt: not a plain decimal"),
])
def test_bills_with_unbounded_numbers_are_refused_before_any_node_is_asked(medfee: Any, line: dict[str, Any],
                                                                           reason: str) -> None:
    """parse_bill runs before the payer's node is asked (pos_handlers._purchase): a Refused is infcode -1 with
    this text as err_msg, and nothing reaches the node."""
    with pytest.raises(Refused, match=reason):
        parse_bill(medfee, [line])


def test_a_bill_at_the_bound_is_taken() -> None:
    bill = parse_bill("10000000000.00", [drug_line("2", "5000000000.00", "10000000000.00")])
    assert bill.medfee_fen == MAX_AMOUNT_FEN


# ------------------------------------------------------------------------------------------ fen on the APIs


@pytest.mark.parametrize(("value", "refused"), [
    (MAX_AMOUNT_FEN, False), (MAX_AMOUNT_FEN + 1, True), (10**30, True), (0, False), (-1, False),
    (True, False), (1.5e12, False), ("1000000000001", False), (None, False),
])
def test_above_max_amount_judges_integers_only(value: object, refused: bool) -> None:
    """What is not an integer is the use case's own business (it answers INVALID_AMOUNT for it)."""
    assert (above_max_amount(value, "amount_fen") is not None) is refused


def test_above_max_amount_says_which_field_and_the_bound() -> None:
    assert above_max_amount(MAX_AMOUNT_FEN + 1, "credits[2].amount_fen") == \
        "credits[2].amount_fen must be at most 1000000000000 fen"


def _payment(**amounts: int) -> PosPaymentRequest:
    return PosPaymentRequest.model_validate({"msgid": MSGID, "psn_no": "P1", "insutype": "310",
                                             "fixmedins_code": "H64010200001", "use_accounts": True, **amounts})


def test_internal_requests_are_bounded() -> None:
    assert _payment(medfee_fen=MAX_AMOUNT_FEN, eligible_fen=MAX_AMOUNT_FEN).medfee_fen == MAX_AMOUNT_FEN
    with pytest.raises(ValidationError):
        _payment(medfee_fen=MAX_AMOUNT_FEN + 1, eligible_fen=0)
    reservation = {"payment_id": "P1", "beneficiary_id_hash": "h", "year": 2025, "payer_psn_no": "P2",
                   "payer_admdvs": "640000"}
    assert PremiumReservationRequest.model_validate(reservation | {"amount_fen": MAX_AMOUNT_FEN}).amount_fen \
        == MAX_AMOUNT_FEN
    with pytest.raises(ValidationError):
        PremiumReservationRequest.model_validate(reservation | {"amount_fen": MAX_AMOUNT_FEN + 1})
