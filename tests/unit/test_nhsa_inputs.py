"""The national interface's inputs as domain types (services/pharmacy_gateway/domain/nhsa_inputs.py): each
infno's fields parsed in order, the 2601 rules of pharmacies, where a 2601 goes (`route_reversal`), and 3201's
comparison."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from services.pharmacy_gateway.domain import nhsa_inputs
from services.pharmacy_gateway.domain.nhsa_inputs import (
    PHARMACY_REVERSIBLE,
    Credential,
    LocalOnly,
    NodeRoute,
    Reversal,
    route_reversal,
)
from services.pharmacy_gateway.domain.wire import Refused

CODE = "P65010100001"
MSGID = CODE + "20260301083000" + "0001"
OMSGID = CODE + "20260301082900" + "0001"


def refused(call: Any) -> str:
    with pytest.raises(Refused) as refusal:
        call()
    return str(refusal.value)


def purchase_input(**data: Any) -> dict[str, Any]:
    fields = {"psn_no": "65010000000000000001", "insutype": "310", "acct_used_flag": "1", "med_type": "41",
              "begntime": "2026-03-01 08:30:00", "medfee_sumamt": Decimal("12.50"), "mdtrt_cert_type": "02",
              "mdtrt_cert_no": "ID-NUMBER"}
    fields.update(data)
    return {"data": {k: v for k, v in fields.items() if v is not None}, "drugdetail": [{
        "feedetl_sn": "1", "med_list_codg": "XA01", "medins_list_codg": "M1", "cnt": 1,
        "pric": Decimal("12.50"), "det_item_fee_sumamt": Decimal("12.50")}]}


def test_a_purchase_parses_into_one_type() -> None:
    purchase = nhsa_inputs.parse_2102(purchase_input(), {"XA01": "drug"})
    assert (purchase.psn_no, purchase.insutype, purchase.use_accounts, purchase.med_type) == (
        "65010000000000000001", "310", True, "41")
    assert purchase.credential == Credential("02", "ID-NUMBER")
    assert (purchase.bill.medfee_fen, purchase.bill.eligible_fen) == (1250, 1250)
    assert nhsa_inputs.parse_2101 is nhsa_inputs.parse_2102


@pytest.mark.parametrize(("fields", "message"), [
    ({"psn_no": None, "insutype": "999"}, "psn_no is required"),
    ({"insutype": "999", "acct_used_flag": "7"}, "insutype must be 310 (employee) or 390 (resident)"),
    ({"acct_used_flag": "7", "med_type": "11"}, "acct_used_flag must be 0 or 1"),
    ({"med_type": "11", "begntime": "yesterday"}, "med_type must be 41 (定点药店购药)"),
    ({"begntime": "yesterday", "mdtrt_cert_no": None}, "begntime must be a time yyyy-MM-dd HH:mm:ss"),
    ({"mdtrt_cert_no": None}, "mdtrt_cert_no is required"),
])
def test_a_purchase_is_told_its_first_fault(fields: dict[str, Any], message: str) -> None:
    assert refused(lambda: nhsa_inputs.parse_2102(purchase_input(**fields), {"XA01": "drug"})) == message


def test_input_data_must_be_an_object() -> None:
    assert refused(lambda: nhsa_inputs.parse_2103({"data": []})) == "input.data must be an object"
    assert refused(lambda: nhsa_inputs.parse_9001({})) == "input.signIn must be an object"


def test_sign_in_and_cancel() -> None:
    sign = nhsa_inputs.parse_9001({"signIn": {"opter_no": "op1"}})
    assert (sign.opter_no, sign.mac, sign.ip) == ("op1", "", "")
    cancel = nhsa_inputs.parse_2103({"data": {"setl_id": "S1", "mdtrt_id": "D1", "psn_no": "P1"}})
    assert (cancel.setl_id, cancel.mdtrt_id, cancel.psn_no) == ("S1", "D1", "P1")
    assert refused(lambda: nhsa_inputs.parse_2103({"data": {"psn_no": "P1"}})) == "setl_id is required"


def test_the_claimed_insured_province_must_be_the_payers() -> None:
    nhsa_inputs.check_claimed_province(None, "650000")
    nhsa_inputs.check_claimed_province("650100", "650000")
    assert refused(lambda: nhsa_inputs.check_claimed_province("620000", "650000")) == (
        "insuplc_admdvs 620000 is not the payer's insured province 650000 (see 1101)")


def reversal_input(oinfno: str = "2102", omsgid: str = OMSGID) -> dict[str, Any]:
    return {"data": {"psn_no": "65010000000000000001", "oinfno": oinfno, "omsgid": omsgid}}


def test_a_pharmacy_reverses_its_settles_and_cancels() -> None:
    reversal = nhsa_inputs.parse_2601(reversal_input("2103"), PHARMACY_REVERSIBLE, fixmedins_code=CODE, msgid=MSGID)
    assert reversal == Reversal("65010000000000000001", "2103", OMSGID)


@pytest.mark.parametrize(("data", "message"), [
    (reversal_input("2101"), "a pre-settle (2101) moves nothing; 2601 cannot reverse it"),
    (reversal_input("2207"), "2601 reverses a 2102 (settle) or a 2103 (cancel) only"),
    (reversal_input(omsgid="X"), "omsgid must be 30 characters (fixmedins_code 12 + yyyyMMddHHmmss 14 + seq 4), "
                                 "got 1"),
    (reversal_input(omsgid=MSGID), "a message cannot reverse itself"),
])
def test_a_reversal_that_cannot_be(data: dict[str, Any], message: str) -> None:
    assert refused(lambda: nhsa_inputs.parse_2601(data, PHARMACY_REVERSIBLE, fixmedins_code=CODE,
                                                  msgid=MSGID)) == message


def test_the_logged_original_must_be_what_the_reversal_says() -> None:
    reversal = Reversal("P1", "2102", OMSGID)
    nhsa_inputs.check_original(PHARMACY_REVERSIBLE, reversal, "2102")
    assert refused(lambda: nhsa_inputs.check_original(PHARMACY_REVERSIBLE, reversal, "2103")) == (
        f"message {OMSGID} was a 2103, not a 2102")
    assert refused(lambda: nhsa_inputs.check_original(PHARMACY_REVERSIBLE, reversal, "2101")) == (
        "a pre-settle (2101) moves nothing; 2601 cannot reverse it")


@dataclass(frozen=True)
class Logged:
    payer_admdvs: str | None
    setl_id: str | None


def test_a_reversal_goes_where_its_original_went() -> None:
    assert route_reversal(Logged("650000", "S1"), "62010000000000000001") == NodeRoute("650000", "S1")
    assert route_reversal(Logged("650000", None), "P1") == NodeRoute("650000", None)


def test_an_original_refused_before_any_node_is_reversed_here() -> None:
    assert route_reversal(Logged(None, None), "65010000000000000001") == LocalOnly()


def test_an_original_not_logged_is_asked_of_the_payers_home_province() -> None:
    assert route_reversal(None, "65010300000000000001") == NodeRoute("650000", None)


def test_an_original_not_logged_with_no_province_in_the_psn_no_is_reversed_here() -> None:
    assert route_reversal(None, "ABC") == LocalOnly()
    assert route_reversal(None, "65A1000000") == LocalOnly()


def test_a_reconciliation_and_its_differences() -> None:
    asked = nhsa_inputs.parse_3201({"data": {
        "stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-31", "setl_optins": "650000",
        "medfee_sumamt": Decimal("100.00"), "acct_pay": "", "fixmedins_setl_cnt": 3}})
    assert (asked.first_day, asked.last_day, asked.setl_optins, asked.insutype) == (
        date(2026, 3, 1), date(2026, 3, 31), "650000", "")
    assert (dict(asked.their_fen), asked.their_count) == ({"medfee_sumamt": 10_000}, 3)
    assert nhsa_inputs.differences(asked, {"medfee_sumamt": 10_000, "fund_pay_sumamt": 0, "acct_pay": 1}, 3) == []
    assert nhsa_inputs.differences(asked, {"medfee_sumamt": 9_000, "fund_pay_sumamt": 0, "acct_pay": 0}, 2) == [
        "medfee_sumamt: yours 100.00, ours 90.00", "fixmedins_setl_cnt: yours 3, ours 2"]


@pytest.mark.parametrize(("data", "message"), [
    ({"stmt_begndate": "2026-03-02", "stmt_enddate": "2026-03-01"}, "stmt_enddate is before stmt_begndate"),
    ({"setl_optins": "65"}, "setl_optins must be a 6-digit region code"),
    ({"fixmedins_setl_cnt": True}, "fixmedins_setl_cnt must be a whole number"),
    ({"fixmedins_setl_cnt": -1}, "fixmedins_setl_cnt must be a whole number"),
])
def test_a_reconciliation_that_cannot_be(data: dict[str, Any], message: str) -> None:
    fields = {"stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-31", **data}
    assert refused(lambda: nhsa_inputs.parse_3201({"data": fields})) == message


def test_hospitals_reconcile_by_a_known_insutype_only() -> None:
    fields = {"stmt_begndate": "2026-03-01", "stmt_enddate": "2026-03-31", "insutype": "999"}
    assert nhsa_inputs.parse_3201({"data": fields}).insutype == "999"
    assert refused(lambda: nhsa_inputs.parse_3201({"data": fields}, checked_insutype=True)) == (
        "insutype must be 310 (employee) or 390 (resident)")
