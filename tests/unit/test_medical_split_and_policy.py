"""Hospital and clinic settlement, pure (API.md "Medical institutions"): the catalogue's line split, the fund
computation under a province's policy, and the person's share paid own account → wallet → quotas → cash.
Every expected figure is worked by hand in the comment beside it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.pharmacy_gateway.domain.medical_bill import (
    CatalogueEntry,
    FeeLine,
    lookup,
    parse_fee_lines,
    split_line,
)
from services.pharmacy_gateway.domain.wire import Refused
from services.province_node.domain.medical_policy import (
    DEFAULT_TABLES,
    MedicalPolicy,
    PolicyInvalid,
    PolicyRule,
    default_policy,
    fund_share,
)
from services.province_node.domain.medical_split import LineAmounts, bill_totals, is_settleable, split_medical
from services.province_node.domain.payment_split import Funds


def fee(sn: str, amount_fen: int, cnt: str = "1", price_fen: int | None = None, code: str = "X") -> FeeLine:
    return FeeLine(sn, "", "B1", code, "", amount_fen, Decimal(cnt),
                   price_fen if price_fen is not None else amount_fen)


# ------------------------------------------------------------------------------------------------ line split


def test_jia_yi_bing_and_unknown_lines() -> None:
    jia = CatalogueEntry("drug", "01")
    yi = CatalogueEntry("drug", "02", Decimal("0.05"))
    bing = CatalogueEntry("drug", "03")
    # 甲类: all of it is inscp.
    assert split_line(fee("1", 10_000), jia).parts == (0, 0, 0, 10_000)
    # 乙类 4.52 × 0.05 = 0.226 → 0.23 preselfpay, 4.29 inscp (the real 2204 answer in reviews/hospital.md §0.7).
    assert split_line(fee("2", 452), yi).parts == (0, 0, 23, 429)
    # 丙类 and unknown items: full self-pay.
    assert split_line(fee("3", 800), bing).parts == (800, 0, 0, 0)
    assert split_line(fee("4", 800), None).parts == (800, 0, 0, 0)
    daily = split_line(fee("5", 500), CatalogueEntry("daily_goods", "01"))
    assert daily.parts == (500, 0, 0, 0) and daily.daily_goods


def test_price_ceiling_then_first_self_pay() -> None:
    # 3 units at 40.00 with a ceiling of 30.00: overlmt = 120.00 − 3 × 30.00 = 30.00; of the rest 90.00 the 乙类
    # share 10 % is 9.00, inscp 81.00.
    entry = CatalogueEntry("service", "02", Decimal("0.10"), pric_uplmt_fen=3_000)
    split = split_line(fee("1", 12_000, "3", 4_000), entry)
    assert (split.fulamt_fen, split.overlmt_fen, split.preselfpay_fen, split.inscp_fen) == (0, 3_000, 900, 8_100)
    # Under the ceiling: nothing over the limit.
    assert split_line(fee("2", 2_000, "1", 2_000), entry).parts == (0, 0, 200, 1_800)


def test_refund_line_is_the_negated_mirror() -> None:
    entry = CatalogueEntry("drug", "02", Decimal("0.05"))
    refund = FeeLine("R1", "1", "", "X", "", -452, Decimal("-1"), 452)
    assert split_line(refund, entry).parts == (0, 0, -23, -429)


def test_catalogue_lookup_prefers_the_province_of_treatment() -> None:
    national = {"A": CatalogueEntry("drug", "01")}
    provincial = {("130000", "A"): CatalogueEntry("drug", "02", Decimal("0.1"))}
    assert lookup("A", "130100", provincial, national) == provincial[("130000", "A")]
    assert lookup("A", "640400", provincial, national) == national["A"]
    assert lookup("B", "130100", provincial, national) is None


def _raw(sn: str, cnt: Any, pric: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"feedetl_sn": sn, "mdtrt_id": "M1", "psn_no": "P1", "chrg_bchno": "B1", "med_list_codg": "A",
            "cnt": cnt, "pric": Decimal(pric), "det_item_fee_sumamt": Decimal(amount), **extra}


def test_fee_line_refusals() -> None:
    ok = parse_fee_lines([_raw("1", 2, "1.50", "3.00")], mdtrt_id="M1", psn_no="P1", batched=True,
                         refunds_allowed=False)
    assert ok[0].amount_fen == 300
    cases = [
        ([_raw("1", 2, "1.50", "3.01")], "cnt × pric"),
        ([_raw("1", 1, "1.00", "1.00"), _raw("1", 1, "1.00", "1.00")], "repeats a feedetl_sn"),
        ([_raw("1", 1, "1.001", "1.00")], "two decimals"),
        ([_raw("1", -1, "1.00", "-1.00", init_feedetl_sn="0")], "refund lines are for 2301"),
        ([_raw("1", 1, "1.00", "1.00", mdtrt_id="M2")], "not the visit"),
        ([_raw("1", 1, "1.00", "1.00", psn_no="P2")], "not the person"),
        ([_raw("1", 1, "99999999999", "99999999999")], "bound"),
    ]
    for lines, why in cases:
        with pytest.raises(Refused, match=why):
            parse_fee_lines(lines, mdtrt_id="M1", psn_no="P1", batched=True, refunds_allowed=False)
    with pytest.raises(Refused, match="init_feedetl_sn"):
        parse_fee_lines([_raw("2", -1, "1.00", "-1.00")], mdtrt_id="M1", psn_no="P1", batched=False,
                        refunds_allowed=True)


# ------------------------------------------------------------------------------------------------ policy


RULE = PolicyRule("390", "inpatient", "3", deductible_fen=100_000, ratio=Decimal("0.65"), annual_cap_fen=20_000_000)


def test_fund_share_worked_example_of_the_hebei_daughter() -> None:
    # reviews/hospital.md §5.3: inscp 10,700.00, deductible 1,000.00 → (10,700 − 1,000) × 0.65 = 6,305.00.
    share = fund_share(1_070_000, RULE, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(0))
    assert (share.act_pay_dedc_fen, share.ratio, share.hifp_pay_fen) == (100_000, Decimal("0.65"), 630_500)


def test_deductible_left_cap_left_and_the_unfiled_cut() -> None:
    # 300.00 of the deductible already used this admission: 700.00 more, then (1,000.00 − 700.00) × 0.65 = 195.00.
    share = fund_share(100_000, RULE, deductible_used_fen=30_000, cap_used_fen=0, ratio_cut=Decimal(0))
    assert (share.act_pay_dedc_fen, share.hifp_pay_fen) == (70_000, 19_500)
    # Unfiled cross-province: 0.65 − 0.10 = 0.55 of 9,700.00 = 5,335.00.
    share = fund_share(1_070_000, RULE, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal("0.10"))
    assert (share.ratio, share.hifp_pay_fen) == (Decimal("0.55"), 533_500)
    # Only 100.00 of the annual cap left: the fund pays 100.00.
    share = fund_share(1_070_000, RULE, deductible_used_fen=0, cap_used_fen=19_990_000, ratio_cut=Decimal(0))
    assert share.hifp_pay_fen == 10_000
    # Half a fen rounds up: (0.03 − 0) × 0.5 = 0.015 → 0.02.
    half = PolicyRule("310", "outpatient", "1", 0, Decimal("0.5"), 100)
    assert fund_share(3, half, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(0)).hifp_pay_fen == 2
    # The cut never makes a ratio negative.
    assert fund_share(3, half, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(1)).hifp_pay_fen == 0


def test_policy_validation() -> None:
    body = default_policy("640000").to_json()
    assert MedicalPolicy.from_json(body) == default_policy("640000")
    for bad in ({**body, "unfiled_ratio_cut": "1.5"},
                {**body, "rules": [{**body["rules"][0], "ratio": "-0.1"}]},
                {**body, "rules": [{**body["rules"][0], "deductible_fen": -1}]},
                {**body, "rules": [{**body["rules"][0], "annual_cap_fen": "x"}]},
                {**body, "rules": [body["rules"][0], body["rules"][0]]},
                {**body, "rules": [{**body["rules"][0], "hosp_lv": "4"}]}):
        with pytest.raises(PolicyInvalid):
            MedicalPolicy.from_json(bad)


def test_every_default_province_has_a_full_policy() -> None:
    for admdvs in ("640000", "620000", "610000", "510000", "350000", "130000"):
        assert admdvs in DEFAULT_TABLES
        policy = default_policy(admdvs)
        for insutype in ("310", "390"):
            for setting in ("outpatient", "inpatient"):
                for hosp_lv in ("1", "2", "3"):
                    assert policy.rule_for(insutype, setting, hosp_lv) is not None
    hebei = default_policy("130000").rule_for("390", "inpatient", "3")
    assert hebei is not None and (hebei.deductible_fen, hebei.ratio) == (100_000, Decimal("0.65"))


# ------------------------------------------------------------------------------------------------ settlement


def test_the_hebei_daughter_paid_from_her_fathers_quota() -> None:
    # reviews/hospital.md §5.3: 12,000.00 = 800.00 自费 + 200.00 over the ceiling + 300.00 乙类 first self-pay
    # + 10,700.00 inscp. Fund 6,305.00; her share 5,695.00: no personal account (resident), no wallet, 4,000.00
    # from her father's quota, 1,695.00 cash.
    lines = [LineAmounts(80_000, 80_000, 0, 0, 0), LineAmounts(300_000, 0, 20_000, 30_000, 250_000),
             LineAmounts(820_000, 0, 0, 0, 820_000)]
    totals = bill_totals(lines)
    assert (totals.medfee_fen, totals.inscp_fen) == (1_200_000, 1_070_000)
    split = split_medical(totals, RULE, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(0),
                          funds=Funds(0, 0, (("B-father", 400_000),)), use_accounts=True)
    assert split.fund_pay_fen == 630_500 and split.psn_part_fen == 569_500
    assert split.person.quota_parts == (("B-father", 400_000),) and split.person.cash_pay_fen == 169_500
    assert split.cleared_fen == 630_500 + 400_000


def test_person_share_order_and_daily_goods_cash() -> None:
    # 100.00 甲类 + 5.00 daily goods, outpatient, deductible 20.00, ratio 0.60: fund (100 − 20) × 0.6 = 48.00;
    # share 57.00 of which 5.00 daily goods always cash; 52.00 from accounts: own 30.00, wallet 15.00, quota 7.00.
    rule = PolicyRule("310", "outpatient", "1", 2_000, Decimal("0.60"), 300_000)
    totals = bill_totals([LineAmounts(10_000, 0, 0, 0, 10_000), LineAmounts(500, 500, 0, 0, 0, daily_goods=True)])
    split = split_medical(totals, rule, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(0),
                          funds=Funds(3_000, 1_500, (("B1", 10_000),)), use_accounts=True)
    assert split.fund.act_pay_dedc_fen == 2_000 and split.fund_pay_fen == 4_800
    person = split.person
    assert (person.acct_pay_fen, person.wallet_pay_fen, person.quota_parts, person.cash_pay_fen) == (
        3_000, 1_500, (("B1", 700),), 500)
    # acct_used_flag 0: the whole share in cash, the fund's part unchanged.
    cash = split_medical(totals, rule, deductible_used_fen=0, cap_used_fen=0, ratio_cut=Decimal(0),
                         funds=Funds(3_000, 1_500, ()), use_accounts=False)
    assert (cash.fund_pay_fen, cash.person.account_pay_fen, cash.person.cash_pay_fen) == (4_800, 0, 5_700)


def test_refund_lines_cannot_take_a_bill_below_zero() -> None:
    assert not is_settleable(bill_totals([LineAmounts(100, 0, 0, 0, 100), LineAmounts(-100, 0, 0, 0, -100)]))
    assert is_settleable(bill_totals([LineAmounts(300, 0, 0, 0, 300), LineAmounts(-100, 0, 0, 0, -100)]))
