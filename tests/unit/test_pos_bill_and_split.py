"""Bills, catalogue eligibility and the payment split (pure, no network): own personal account first, then
the wallet, then quotas received, the rest cash; daily goods and unknown items are always cash."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.pharmacy_gateway.domain.bill import parse_bill, split_bill
from services.pharmacy_gateway.domain.wire import Refused
from services.province_node.domain import ledger
from services.province_node.domain.payment_split import Funds, Split, account_posting, split_payment

CATALOGUE = {"DRUG": "drug", "DEVICE": "device", "SERVICE": "service", "TISSUES": "daily_goods"}


def line(code: str, cnt: Any, pric: str, fee: str | None = None, sn: str | None = None) -> dict[str, Any]:
    fee_yuan = fee if fee is not None else str((Decimal(str(cnt)) * Decimal(pric)).quantize(Decimal("0.01")))
    return {"feedetl_sn": sn or code, "med_list_codg": code, "medins_list_codg": "", "cnt": cnt,
            "pric": Decimal(pric), "det_item_fee_sumamt": Decimal(fee_yuan)}


# ------------------------------------------------------------------------------------------------ the bill


def test_daily_goods_and_unknown_items_are_cash_only() -> None:
    bill = parse_bill(Decimal("107.50"), [line("DRUG", 4, "25.00"), line("TISSUES", 1, "5.00"),
                                          line("NOT-LISTED", 1, "2.50")])
    split = split_bill(bill, CATALOGUE)
    assert (split.medfee_fen, split.eligible_fen, split.self_pay_fen) == (10_750, 10_000, 750)
    assert [p.eligible for p in split.lines] == [True, False, False]


def test_devices_and_services_are_eligible() -> None:
    bill = parse_bill("30.00", [line("DEVICE", 1, "20.00"), line("SERVICE", 2, "5.00")])
    assert split_bill(bill, CATALOGUE).eligible_fen == 3_000


@pytest.mark.parametrize(("medfee", "lines", "reason"), [
    (Decimal("24.00"), [line("DRUG", 2, "10.00"), line("TISSUES", 1, "3.00")], "add up"),
    (Decimal("21.00"), [line("DRUG", 2, "10.00", fee="21.00")], "cnt × pric"),
    (Decimal("20.00"), [line("DRUG", 2, "10.00", sn="1"), line("DRUG", 1, "0.00", sn="1")], "repeats"),
    (Decimal("0"), [line("DRUG", 1, "0.00")], "more than 0"),
    (Decimal("10.00"), [], "items"),
    (Decimal("10.00"), "not a list", "items"),
    (Decimal("10.00"), [line("DRUG", 1, "10.00") | {"med_list_codg": ""}], "med_list_codg"),
    (Decimal("10.00"), ["not an object"], "object"),
])
def test_bills_whose_parts_do_not_agree_are_refused(medfee: Any, lines: Any, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        parse_bill(medfee, lines)


def test_half_a_box_rounds_to_the_fen() -> None:
    bill = parse_bill("1.67", [line("DRUG", Decimal("0.5"), "3.33", fee="1.67")])
    assert bill.medfee_fen == 167


# ------------------------------------------------------------------------------------------------ the split


def test_personal_account_first_then_wallet_then_quotas_then_cash() -> None:
    funds = Funds(personal_account_fen=3_000, wallet_fen=5_000, quotas=(("B-old", 1_000), ("B-new", 10_000)))
    split = split_payment(20_000, 19_000, funds, use_accounts=True)
    assert split == Split(3_000, 5_000, (("B-old", 1_000), ("B-new", 10_000)), 1_000)
    assert (split.mulaid_pay_fen, split.account_pay_fen) == (16_000, 19_000)


def test_cheap_bill_touches_only_the_personal_account() -> None:
    split = split_payment(2_000, 2_000, Funds(3_000, 5_000, (("B", 100),)), use_accounts=True)
    assert split == Split(2_000, 0, (), 0)


def test_ineligible_part_is_cash_even_with_money_left() -> None:
    split = split_payment(10_750, 10_000, Funds(100_000, 0), use_accounts=True)
    assert (split.acct_pay_fen, split.cash_pay_fen) == (10_000, 750)


def test_no_account_use_is_all_cash() -> None:
    assert split_payment(5_000, 5_000, Funds(100_000, 100_000), use_accounts=False) == Split(0, 0, (), 5_000)


def test_resident_without_personal_account_pays_from_wallet_and_quota() -> None:
    split = split_payment(25_000, 25_000, Funds(0, 20_000, (("B", 2_000),)), use_accounts=True)
    assert split == Split(0, 20_000, (("B", 2_000),), 3_000)


@pytest.mark.parametrize("medfee_fen", range(1, 400, 7))
def test_the_parts_always_add_up(medfee_fen: int) -> None:
    funds = Funds(37, 55, (("a", 13), ("b", 0), ("c", 71)))
    for eligible_fen in (0, medfee_fen // 3, medfee_fen):
        split = split_payment(medfee_fen, eligible_fen, funds, use_accounts=True)
        assert split.account_pay_fen + split.cash_pay_fen == medfee_fen
        assert split.account_pay_fen <= eligible_fen
        assert all(amount > 0 for _, amount in split.quota_parts)


# ------------------------------------------------------------------------------------------------ postings


def test_payment_posting_moves_accounts_to_clearing_and_back() -> None:
    paid = account_posting("POS_SETTLE", "S1", "P1", 3_000, 500, refund=False)
    assert paid is not None and paid.legs == ((ledger.personal_account("P1"), -3_000),
                                              (ledger.wallet_account("P1"), -500), (ledger.CLEARING, 3_500))
    back = account_posting("POS_CANCEL", "S1", "P1", 3_000, 0, refund=True)
    assert back is not None and back.legs == ((ledger.personal_account("P1"), 3_000), (ledger.CLEARING, -3_000))
    assert account_posting("POS_SETTLE", "S1", "P1", 0, 0, refund=False) is None  # all cash: no entry
