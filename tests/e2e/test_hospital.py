"""Hospitals and clinics through the gateway's national interface, on the real federation (issue 11, points 1-5
and its "Bad input" list): outpatient and inpatient chains, the fund's share under the home province's policy
with the catalogue of the province of treatment, accumulators that cancels give back, quota and wallet money,
2601, filings, clearing obligations and 3201. Every figure is worked by hand in the comment beside it."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from launcher.client import FederationClient, Session
from launcher.people import Person, new_person
from launcher.pos_client import (
    DEMO_CATALOGUE,
    HEBEI_CATALOGUE,
    HOSPITAL_CATALOGUE,
    Fee,
    HisClient,
    Payer,
    PosClient,
    import_medical_catalogue,
    ok,
    register_medical_institution,
    total,
)
from shared.clock import SHANGHAI
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, eventually, face_login, me, money_totals
from tests.e2e.pos import frozen, obligations

pytestmark = pytest.mark.federation

CONSULT = "001101000010000"  # 普通门诊诊查费, 甲类
BLOOD = "002201000010000"  # 血常规, 甲类
CRP = "002202000020000"  # C反应蛋白, 乙类 10 %
MASK = "ZZ0000000301"  # 进口雾化面罩, 丙类
KIT = "RY0000000101"  # 住院生活用品包, daily goods
BED = "001103000010000"  # 床位费, 甲类, ceiling 40.00 a day
CEFTRIAXONE = "XJ01DDA201B002"  # 乙类 5 %
AZITHROMYCIN = "XJ01FAA091B001"  # 甲类
WARD_ROUND = "001201000010000"  # 住院诊查费, 甲类
AMBROXOL = "XR05CBA023X001"  # 乙类 10 % nationally, 5 % in Hebei


def _code(prefix: str) -> str:
    return prefix + f"{random.randrange(10**7):07d}"


@dataclass
class Institutions:
    lanzhou_clinic: HisClient  # 620100, level 1
    lanzhou_hospital: HisClient  # 620100, level 3
    lanzhou_other: HisClient  # another level-3 Lanzhou hospital
    pharmacy: PosClient  # a Lanzhou pharmacy


async def _his(admin: FederationClient, federation: Federation, name: str, admdvs: str, kind: str,
               hosp_lv: str) -> HisClient:
    registration = await register_medical_institution(admin.http, admin.gateway_url(), federation.operator_token,
                                                       _code("H" + admdvs[:4]), name, admdvs, kind=kind,
                                                       hosp_lv=hosp_lv)
    assert (registration["kind"], registration["hosp_lv"]) == (kind, hosp_lv)
    his = HisClient.registered(admin.gateway_url(), registration)
    await his.sign_in()
    return his


@pytest.fixture(scope="module")
async def places(admin: FederationClient, federation: Federation) -> AsyncIterator[Institutions]:
    await admin.import_catalogue(DEMO_CATALOGUE)
    await import_medical_catalogue(admin.http, admin.gateway_url(), federation.operator_token, HOSPITAL_CATALOGUE)
    await import_medical_catalogue(admin.http, admin.gateway_url(), federation.operator_token, HEBEI_CATALOGUE,
                                   admdvs="130000")
    pharmacy_registration = await admin.register_institution(_code("P6201"), "兰州惠仁堂药店", "620100")
    pharmacy = PosClient.registered(admin.gateway_url(), pharmacy_registration)
    await pharmacy.sign_in()
    made = Institutions(await _his(admin, federation, "兰州市城关区社区卫生服务中心", "620100", "clinic", "1"),
                        await _his(admin, federation, "兰州大学第一医院", "620100", "hospital", "3"),
                        await _his(admin, federation, "甘肃省人民医院", "620100", "hospital", "3"), pharmacy)
    try:
        yield made
    finally:
        for client in (made.lanzhou_clinic, made.lanzhou_hospital, made.lanzhou_other, made.pharmacy):
            await client.aclose()


async def _enrolled(client: FederationClient, pooling: str, *, pa_fen: int = 100_000,
                    employee: bool = True) -> Person:
    person = new_person(pooling, employee=employee, personal_account_fen=pa_fen)
    result = await client.import_persons(person.admdvs, [person.import_body()])
    assert result["rejected"] == [], result
    return person


async def _payer(his: HisClient, person: Person) -> Payer:
    return await his.payer("02", person.id_no)


def _failed(response: dict[str, Any], why: str) -> None:
    assert response["infcode"] == -1, response
    assert why in str(response["err_msg"]), response["err_msg"]


async def _operator(admin: FederationClient, method: str, admdvs: str, path: str, body: Any = None) -> httpx.Response:
    return await admin.http.request(method, f"{admin.node_url(admdvs)}{path}", json=body, headers={
        "authorization": f"Bearer {admin.operator_token}", "idempotency-key": uuid.uuid4().hex})


async def _outpatient_visit(his: HisClient, payer: Payer, fees: list[Fee],
                            batch: str = "B1") -> tuple[str, dict[str, Any]]:
    registered = ok(await his.register(payer))
    mdtrt_id = registered["data"]["mdtrt_id"]
    assert mdtrt_id.startswith(payer.insuplc_admdvs[:2])
    ok(await his.visit_info(mdtrt_id, payer.psn_no))
    lines = ok(await his.upload(mdtrt_id, payer.psn_no, batch, fees))
    return mdtrt_id, lines


# ------------------------------------------------------------------------------------------------ outpatient


OUTPATIENT_FEES = [Fee(CONSULT, 1, "20.00"), Fee(BLOOD, 1, "25.00"), Fee(CRP, 1, "50.00"), Fee(MASK, 1, "30.00"),
                   Fee(KIT, 1, "10.00")]


async def test_outpatient_chain_cross_province_filing_cancel_and_clearing(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    """A Guyuan (Ningxia) employee with 1,000 yuan in his account sees a doctor at a Lanzhou community clinic
    (level 1): Ningxia's rule for 310 outpatient level 1 is deductible 0, ratio 0.70; in another province without
    a filing 0.60. Lines: 20 + 25 (甲) + 50 (乙 10 %: 5 first self-pay, 45 inscp) + 30 (丙) + 10 (daily goods):
    135.00, inscp 90.00, fulamt 40.00, preselfpay 5.00. Fund round(90 × 0.60) = 54.00; his share 81.00: 71.00 from
    his account, the daily goods' 10.00 in cash."""
    person = await _enrolled(admin, "640400", pa_fen=100_000)
    session = await face_login(admin, person)
    his = places.lanzhou_clinic
    payer = await _payer(his, person)
    before = await money_totals(admin, federation)
    mdtrt_id, lines = await _outpatient_visit(his, payer, OUTPATIENT_FEES)
    by_sn = {line["feedetl_sn"]: line for line in lines["result"]}
    split = [(line["fulamt_ownpay_amt"], line["overlmt_amt"], line["preselfpay_amt"], line["inscp_scp_amt"])
             for line in lines["result"]]
    assert split == [(0.0, 0.0, 0.0, 20.0), (0.0, 0.0, 0.0, 25.0), (0.0, 0.0, 5.0, 45.0), (30.0, 0.0, 0.0, 0.0),
                     (10.0, 0.0, 0.0, 0.0)], by_sn

    medfee = total(OUTPATIENT_FEES)
    pre = ok(await his.presettle_visit(payer, mdtrt_id, "B1", medfee))["setlinfo"]
    assert "setl_id" not in pre and pre["hifp_pay"] == 54.0 and pre["pool_prop_selfpay"] == 0.6
    msgid = his.new_msgid()
    settled = await his.settle_visit(payer, mdtrt_id, "B1", medfee, msgid=msgid)
    info = ok(settled)["setlinfo"]
    expected = {"medfee_sumamt": 135.0, "fulamt_ownpay_amt": 40.0, "overlmt_selfpay": 0.0, "preselfpay_amt": 5.0,
                "inscp_scp_amt": 90.0, "act_pay_dedc": 0.0, "hifp_pay": 54.0, "fund_pay_sumamt": 54.0,
                "psn_part_amt": 81.0, "acct_pay": 71.0, "acct_mulaid_pay": 0.0, "psn_cash_pay": 10.0,
                "hosp_part_amt": 0.0, "balc": 929.0}
    assert {key: info[key] for key in expected} == expected
    assert info["medfee_sumamt"] == info["fund_pay_sumamt"] + info["acct_pay"] + info["acct_mulaid_pay"] \
        + info["psn_cash_pay"]
    # A repeated msgid gets the original answer and moves nothing.
    again = await his.settle_visit(payer, mdtrt_id, "B1", medfee, msgid=msgid)
    assert again["output"] == settled["output"]
    assert (await me(admin, session))["personal_account_fen"] == 92_900
    # The batch is settled: no second settlement, no more lines in it.
    _failed(await his.settle_visit(payer, mdtrt_id, "B1", medfee), "settled already")
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B1", [Fee(CONSULT, 1, "1.00")]), "is settled")
    _failed(await his.drop_batch(mdtrt_id, payer.psn_no, "B1"), "is settled")

    # Clearing: Ningxia owes Gansu fund 54.00 + account 71.00.
    setl_id = info["setl_id"]
    assert await obligations(federation, setl_id, 1) == [("MEDICAL", "640000", "620000", 12_500)]

    # 2208: everything back, negated; the cash part also as pdn_cash_pay; a second cancel is refused.
    cancelled = ok(await his.cancel_visit_settlement(setl_id, mdtrt_id, payer.psn_no))["setlinfo"]
    assert (cancelled["medfee_sumamt"], cancelled["hifp_pay"], cancelled["acct_pay"], cancelled["pdn_cash_pay"],
            cancelled["balc"]) == (-135.0, -54.0, -71.0, -10.0, 1000.0)
    _failed(await his.cancel_visit_settlement(setl_id, mdtrt_id, payer.psn_no), "nothing to cancel")
    assert await obligations(federation, setl_id, 2) == [("MEDICAL", "640000", "620000", 12_500),
                                                          ("MEDICAL_REFUND", "640000", "620000", -12_500)]

    # He files long-term residence in Gansu: the same bill, re-settled, is paid at the full 0.70: 63.00.
    filed = await admin.call(session, "POST", "/v1/filings", {
        "mdtrtarea_admdvs": "620000", "kind": "resident", "begndate": datetime.now(SHANGHAI).date().isoformat()})
    assert filed.status_code == 201, filed.text
    assert filed.json()["state"] == "ACTIVE"
    resettled = ok(await his.settle_visit(payer, mdtrt_id, "B1", medfee))["setlinfo"]
    assert (resettled["hifp_pay"], resettled["pool_prop_selfpay"], resettled["acct_pay"],
            resettled["psn_cash_pay"]) == (63.0, 0.7, 62.0, 10.0)
    listed = await admin.call(session, "GET", "/v1/filings")
    assert [f["filing_id"] for f in listed.json()] == [filed.json()["filing_id"]]
    ended = await admin.call(session, "DELETE", f"/v1/filings/{filed.json()['filing_id']}")
    assert ended.status_code == 200 and ended.json()["state"] == "ENDED"

    # 3201 at the clinic: one settlement in effect (the re-settled one), one cancelled; fund included.
    today = datetime.now(SHANGHAI).date()
    statement = ok(await his.reconcile(today, today, fund_pay_sumamt=Decimal("63.00"), acct_pay=Decimal("62.00"),
                                       fixmedins_setl_cnt=1))["stmtinfo"]
    assert (statement["fixmedins_setl_cnt"], statement["fund_pay_sumamt"], statement["medfee_sumamt"],
            statement["cancelled_cnt"], statement["stmt_rslt"]) == (1, 63.0, 135.0, 1, "0")
    after = await money_totals(admin, federation)
    assert after["held_fen"] == before["held_fen"]
    assert after["citizen_fen"] == before["citizen_fen"] - 6_200  # his account, less the 62.00 in effect


async def test_outpatient_deductible_is_per_year_and_cancels_give_it_back(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    """A policy with a 60.00 outpatient deductible at Gansu's level 3 (PUT, then the default restored): a Lanzhou
    employee's first visit (inscp 90.00) uses 60.00 of it, fund (90 − 60) × 0.55 = 16.50; a second visit finds
    it used up: 90 × 0.55 = 49.50; cancelling the first gives the 60.00 back, so a third pays 16.50 again."""
    default = (await _operator(admin, "GET", "620000", "/v1/admin/medical-policy")).json()
    rules = [dict(rule) for rule in default["rules"]]
    for rule in rules:
        if (rule["insutype"], rule["setting"], rule["hosp_lv"]) == ("310", "outpatient", "3"):
            rule.update(deductible_fen=6_000, ratio="0.55", annual_cap_fen=250_000)
    bad = await _operator(admin, "PUT", "620000", "/v1/admin/medical-policy",
                          {"rules": [{**rules[0], "ratio": "1.2"}], "unfiled_ratio_cut": "0.10"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_POLICY"
    bad = await _operator(admin, "PUT", "620000", "/v1/admin/medical-policy",
                          {"rules": [{**rules[0], "deductible_fen": -1}], "unfiled_ratio_cut": "0.10"})
    assert bad.status_code == 422
    put = await _operator(admin, "PUT", "620000", "/v1/admin/medical-policy",
                          {"rules": rules, "unfiled_ratio_cut": "0.10"})
    assert put.status_code == 200, put.text
    try:
        person = await _enrolled(admin, "620100", pa_fen=100_000)
        his = places.lanzhou_hospital
        payer = await _payer(his, person)
        fees = OUTPATIENT_FEES[:3]  # 95.00, inscp 90.00
        first_visit, _ = await _outpatient_visit(his, payer, fees)
        first = ok(await his.settle_visit(payer, first_visit, "B1", total(fees)))["setlinfo"]
        assert (first["act_pay_dedc"], first["hifp_pay"], first["acct_pay"]) == (60.0, 16.5, 78.5)
        second_visit, _ = await _outpatient_visit(his, payer, fees)
        second = ok(await his.settle_visit(payer, second_visit, "B1", total(fees)))["setlinfo"]
        assert (second["act_pay_dedc"], second["hifp_pay"]) == (0.0, 49.5)
        ok(await his.cancel_visit_settlement(first["setl_id"], first_visit, payer.psn_no))
        third_visit, _ = await _outpatient_visit(his, payer, fees)
        third = ok(await his.settle_visit(payer, third_visit, "B1", total(fees)))["setlinfo"]
        assert (third["act_pay_dedc"], third["hifp_pay"]) == (60.0, 16.5)
        # acct_used_flag 0: all of his share in cash, the fund's part unchanged (the deductible is used).
        fourth_visit, _ = await _outpatient_visit(his, payer, fees)
        fourth = ok(await his.settle_visit(payer, fourth_visit, "B1", total(fees), acct_used=False))["setlinfo"]
        assert (fourth["hifp_pay"], fourth["acct_pay"], fourth["psn_cash_pay"]) == (49.5, 0.0, 45.5)
    finally:
        restored = await _operator(admin, "PUT", "620000", "/v1/admin/medical-policy",
                                   {"rules": default["rules"], "unfiled_ratio_cut": default["unfiled_ratio_cut"]})
        assert restored.status_code == 200, restored.text


# ------------------------------------------------------------------------------------------------ inpatient


async def _quota_pair(admin: FederationClient, quota_fen: int) -> tuple[Session, Session, Person, str]:
    """A son in Yinchuan (Ningxia employee) and his mother in Lanzhou (Gansu resident), with a quota for her."""
    pair = await bound_pair(admin, "640100", "620100", relation="parent")
    quota = await admin.call(pair.giver_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                             {"annual_quota_fen": quota_fen}, idempotency_key=uuid.uuid4().hex)
    assert quota.status_code == 200, quota.text

    async def arrived() -> bool:
        return [q["annual_quota_fen"] for q in (await me(admin, pair.relative_session))["quotas_received"]] == [
            quota_fen]

    await eventually(arrived, "the quota mirror reaches her province")
    return pair.giver_session, pair.relative_session, pair.relative, pair.binding_id


STAY_FEES = [Fee(BED, 5, "60.00", "S1"), Fee(CEFTRIAXONE, 10, "35.00", "S2"), Fee(AZITHROMYCIN, 6, "48.50", "S3"),
             Fee(KIT, 1, "25.00", "S4"), Fee(WARD_ROUND, 5, "20.00", "S5")]


async def test_inpatient_stay_paid_from_a_sons_quota_cancelled_resettled_and_reversed(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    """A Lanzhou mother (resident, no personal account) admitted to a level-3 Lanzhou hospital; Gansu's rule for
    390 inpatient level 3: deductible 600.00 per admission, ratio 0.70. Lines: bed 5 × 60.00 with a 40.00 ceiling
    (100.00 over the limit, 200.00 inscp), ceftriaxone 350.00 乙类 5 % (17.50 first self-pay), azithromycin
    291.00 甲类, a daily-goods kit 25.00, ward rounds 100.00; one azithromycin refunded (−48.50). Total 1,017.50,
    inscp 875.00; fund round((875 − 600) × 0.70) = 192.50; her share 825.00: 800.00 from her son's quota, the kit's
    25.00 in cash."""
    _, mother_session, mother, _ = await _quota_pair(admin, 300_000)
    his = places.lanzhou_hospital
    payer = await _payer(his, mother)
    admitted = ok(await his.admit(payer))
    mdtrt_id = admitted["result"]["mdtrt_id"]
    # Admitted and not discharged: no second admission anywhere.
    _failed(await places.lanzhou_other.admit(payer), "admitted already")
    ok(await his.upload_stay(mdtrt_id, payer.psn_no, STAY_FEES))
    _failed(await his.upload_stay(mdtrt_id, payer.psn_no, [Fee(BED, 1, "60.00", "S1")]), "already uploaded")
    _failed(await his.upload_stay(mdtrt_id, payer.psn_no, [Fee(AZITHROMYCIN, -7, "48.50", "R1", "S3")]),
            "refunds more than")
    refund = ok(await his.upload_stay(mdtrt_id, payer.psn_no, [Fee(AZITHROMYCIN, -1, "48.50", "R1", "S3")]))
    assert refund["result"][0]["inscp_scp_amt"] == -48.5
    medfee = total(STAY_FEES) - Decimal("48.50")
    assert medfee == Decimal("1017.50")
    _failed(await his.settle_stay(payer, mdtrt_id, medfee), "discharge (2402) before settling")
    ok(await his.discharge(mdtrt_id, payer.psn_no, payer.insutype))
    _failed(await his.settle_stay(payer, mdtrt_id, medfee + Decimal("1")), "not the sum of the fee lines")
    pre = ok(await his.presettle_stay(payer, mdtrt_id, medfee))["setlinfo"]
    assert pre["hifp_pay"] == 192.5
    settled = ok(await his.settle_stay(payer, mdtrt_id, medfee))["setlinfo"]
    expected = {"medfee_sumamt": 1017.5, "fulamt_ownpay_amt": 25.0, "overlmt_selfpay": 100.0,
                "preselfpay_amt": 17.5, "inscp_scp_amt": 875.0, "act_pay_dedc": 600.0, "hifp_pay": 192.5,
                "pool_prop_selfpay": 0.7, "fund_pay_sumamt": 192.5, "psn_part_amt": 825.0, "acct_pay": 0.0,
                "acct_mulaid_pay": 800.0, "quota_pay": 800.0, "psn_cash_pay": 25.0, "quota_balc": 2200.0}
    assert {key: settled[key] for key in expected} == expected
    # In-province for her (Gansu at a Lanzhou hospital): nothing to clear between provinces for the fund; the
    # quota use is her son's province's debt (the quota path's own obligation).
    assert await obligations(federation, settled["setl_id"], 0) == []
    _failed(await his.upload_stay(mdtrt_id, payer.psn_no, [Fee(BED, 1, "60.00", "S9")]), "no more fee lines")
    _failed(await his.cancel_discharge(mdtrt_id, payer.psn_no), "cancel the settlement first")
    # Another institution cannot cancel it.
    _failed(await places.lanzhou_other.cancel_stay_settlement(settled["setl_id"], mdtrt_id, payer.psn_no),
            "another institution")

    # 2305: the quota and the admission's deductible come back; 2405, then discharge and settle again: the same.
    cancelled = ok(await his.cancel_stay_settlement(settled["setl_id"], mdtrt_id, payer.psn_no))["setlinfo"]
    assert (cancelled["hifp_pay"], cancelled["acct_mulaid_pay"], cancelled["quota_balc"]) == (-192.5, -800.0, 3000.0)
    ok(await his.cancel_discharge(mdtrt_id, payer.psn_no))
    ok(await his.discharge(mdtrt_id, payer.psn_no, payer.insutype))
    msgid = his.new_msgid()
    again = ok(await his.settle_stay(payer, mdtrt_id, medfee, msgid=msgid))["setlinfo"]
    assert (again["act_pay_dedc"], again["hifp_pay"], again["quota_pay"]) == (600.0, 192.5, 800.0)

    # 2601 of that 2304: everything back, the stay discharged and unsettled again.
    reversed_ = ok(await his.reverse(msgid, "2304", payer.psn_no))
    assert reversed_["undone"] is True and reversed_["setlinfo"]["setl_state"] == "REVERSED"
    mine = await me(admin, mother_session)
    assert [q["used_fen"] for q in mine["quotas_received"]] == [0]
    # The reversed message, repeated, gets its original answer and moves nothing; a new settle works.
    repeated = ok(await his.settle_stay(payer, mdtrt_id, medfee, msgid=msgid))["setlinfo"]
    assert repeated["setl_id"] == again["setl_id"]
    assert [q["used_fen"] for q in (await me(admin, mother_session))["quotas_received"]] == [0]
    final = ok(await his.settle_stay(payer, mdtrt_id, medfee))["setlinfo"]
    assert final["hifp_pay"] == 192.5

    # Statistics count her son's quota used at the hospital as use "inpatient" (Ningxia → Gansu).
    month = datetime.now(SHANGHAI).strftime("%Y-%m")

    async def counted() -> bool:
        response = await admin.http.get(f"{admin.hub_url()}/v1/ops/stats", params={"from": month, "to": month},
                                        headers={"authorization": f"Bearer {admin.operator_token}"})
        return any(row["use"] == "inpatient" and row["kind"] == "quota_use" and row["from_admdvs"] == "640000"
                   and row["to_admdvs"] == "620000" and row["amount_fen"] >= 80_000
                   for row in response.json()["rows"])

    await eventually(counted, "the hub's statistics show the inpatient quota use")


async def test_reversals_of_admissions_and_of_messages_that_never_arrived(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    person = await _enrolled(admin, "620100", pa_fen=50_000)
    his = places.lanzhou_hospital
    payer = await _payer(his, person)
    # 2601 of a 2401: the admission is cancelled, and the person may be admitted again.
    admit_msgid = his.new_msgid()
    mdtrt_id = ok(await his.admit(payer, msgid=admit_msgid))["result"]["mdtrt_id"]
    undone = ok(await his.reverse(admit_msgid, "2401", payer.psn_no))
    assert undone["undone"] is True and undone["visit_state"] == "CANCELLED"
    _failed(await his.discharge(mdtrt_id, payer.psn_no, payer.insutype), "CANCELLED")
    second = ok(await his.admit(payer))["result"]["mdtrt_id"]
    ok(await his.cancel_admission(second, payer.psn_no))
    # A 2207 reversed before it arrived can never take effect.
    mdtrt, _ = await _outpatient_visit(his, payer, OUTPATIENT_FEES[:2])
    lost = his.new_msgid()
    nothing = ok(await his.reverse(lost, "2207", payer.psn_no))
    assert nothing["undone"] is False
    _failed(await his.settle_visit(payer, mdtrt, "B1", total(OUTPATIENT_FEES[:2]), msgid=lost), "reversed")
    # 2601 of a pre-settle or a registration: refused.
    _failed(await his.reverse(his.new_msgid(), "2206", payer.psn_no), "reverses 2207")
    _failed(await his.reverse(his.new_msgid(), "2201", payer.psn_no), "reverses 2207")


# ------------------------------------------------------------------------------------------------ bad input


async def test_bad_input_is_refused_and_moves_nothing(federation: Federation, admin: FederationClient,
                                                      places: Institutions) -> None:
    person = await _enrolled(admin, "620100", pa_fen=50_000)
    session = await face_login(admin, person)
    his, other = places.lanzhou_clinic, places.lanzhou_other
    payer = await _payer(his, person)
    before = await me(admin, session)

    # A pharmacy sending 22xx, a hospital sending 2101-2103.
    _failed(await places.pharmacy.call("2201", {"data": {"psn_no": payer.psn_no}}), "for hospitals and clinics")
    _failed(await his.presettle(payer, []), "for pharmacies")
    # Settle without registration (an unknown mdtrt_id), details for an unknown visit.
    _failed(await his.settle_visit(payer, "620000" + "0" * 24, "B1", Decimal("10.00")), "unknown mdtrt_id")
    _failed(await his.upload("640000" + "0" * 24, payer.psn_no, "B1", [Fee(CONSULT, 1, "1.00")]),
            "unknown mdtrt_id")
    mdtrt_id, _ = await _outpatient_visit(his, payer, [Fee(CONSULT, 1, "20.00", "L1")])
    # A repeated feedetl_sn, in one message and across messages.
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B2", [Fee(CONSULT, 1, "1.00", "L1")]), "already uploaded")
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B2",
                             [Fee(CONSULT, 1, "1.00", "X"), Fee(BLOOD, 1, "1.00", "X")]), "repeats a feedetl_sn")
    # Amounts with more than two decimals, above the bound, lines that do not add up.
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B2", [Fee(CONSULT, 1, "1.001")]), "two decimals")
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B2", [Fee(CONSULT, 1, "20000000000")]), "bound")
    _failed(await his.settle_visit(payer, mdtrt_id, "B1", Decimal("19.99")), "not the sum of the fee lines")
    _failed(await his.settle_visit(payer, mdtrt_id, "B1", Decimal("20.001")), "two decimals")
    # Another institution's visit; a refund line at an outpatient visit.
    _failed(await other.settle_visit(payer, mdtrt_id, "B1", Decimal("20.00")), "another institution")
    _failed(await his.upload(mdtrt_id, payer.psn_no, "B2", [Fee(CONSULT, -1, "1.00", "R", "L1")]), "2301")
    # A cancel of another person's settlement and a settle of another person's visit.
    someone = await _enrolled(admin, "620100", pa_fen=50_000)
    someone_payer = await _payer(his, someone)
    _failed(await his.settle_visit(someone_payer, mdtrt_id, "B1", Decimal("20.00")), "another person")
    settled = ok(await his.settle_visit(payer, mdtrt_id, "B1", Decimal("20.00")))["setlinfo"]
    _failed(await his.cancel_visit_settlement(settled["setl_id"], mdtrt_id, someone_payer.psn_no),
            "not of this psn_no")
    # Registration cancelled only while nothing is settled.
    _failed(await his.cancel_registration(mdtrt_id, payer.psn_no), "cancel it first")
    after = await me(admin, session)
    # Gansu, 310 outpatient level 1: a 200.00 deductible per year takes all of the 20.00; his account pays it.
    assert after["personal_account_fen"] == before["personal_account_fen"] - 2_000
    # Filings: a bad area or dates → 422.
    bad = await admin.call(session, "POST", "/v1/filings", {"mdtrtarea_admdvs": "12", "kind": "resident",
                                                            "begndate": "2025-01-01"})
    assert bad.status_code == 422
    bad = await admin.call(session, "POST", "/v1/filings", {"mdtrtarea_admdvs": "640000", "kind": "resident",
                                                            "begndate": "2025-02-01", "enddate": "2025-01-01"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_FILING"


async def test_hebei_catalogue_applies_to_treatment_in_hebei(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    """The province of treatment's catalogue: ambroxol is 乙类 10 % nationally, 5 % in Hebei. A Ningxia employee
    at a Shijiazhuang clinic (no Hebei node needed: money moves at his home) pays 5 % first self-pay on 40.00."""
    registration = await register_medical_institution(admin.http, admin.gateway_url(), federation.operator_token,
                                                       _code("H1301"), "石家庄市长安区社区卫生服务中心", "130100",
                                                       kind="clinic", hosp_lv="1")
    his = HisClient.registered(admin.gateway_url(), registration)
    try:
        await his.sign_in()
        person = await _enrolled(admin, "640100", pa_fen=50_000)
        payer = await _payer(his, person)
        _, lines = await _outpatient_visit(his, payer, [Fee(AMBROXOL, 2, "20.00")])
        assert (lines["result"][0]["preselfpay_amt"], lines["result"][0]["inscp_scp_amt"]) == (2.0, 38.0)
        _, lanzhou_lines = await _outpatient_visit(places.lanzhou_clinic, payer, [Fee(AMBROXOL, 2, "20.00")])
        assert lanzhou_lines["result"][0]["preselfpay_amt"] == 4.0
    finally:
        await his.aclose()


# ------------------------------------------------------------------------------------------------ point 3


PROVINCE_TIMEOUT_S = 3.0  # GatewaySettings.province_call_timeout_s (default)


async def test_a_silent_home_province_hurts_only_its_own_patients_and_2601_settles_the_doubt(
        federation: Federation, admin: FederationClient, places: Institutions) -> None:
    """A Shaanxi patient's 2207 while Shaanxi's node hangs: -1 "outcome unknown" when the gateway's deadline
    passes; a Gansu patient at the same clinic settles meanwhile; after the node wakes, 2601 makes both sides
    agree."""
    shaanxi = await _enrolled(admin, "610100", pa_fen=100_000)
    gansu = await _enrolled(admin, "620100", pa_fen=100_000)
    session = await face_login(admin, shaanxi)
    his = places.lanzhou_clinic
    sx_payer, gs_payer = await _payer(his, shaanxi), await _payer(his, gansu)
    fees = OUTPATIENT_FEES[:3]
    sx_visit, _ = await _outpatient_visit(his, sx_payer, fees)
    gs_visit, _ = await _outpatient_visit(his, gs_payer, fees)
    msgid = his.new_msgid()
    with frozen(federation, "node-610000"):
        # The gateway's own deadline answers the Shaanxi patient, not a broken connection nor anything later.
        async with asyncio.timeout(PROVINCE_TIMEOUT_S + 2):
            lost_task = asyncio.create_task(his.settle_visit(sx_payer, sx_visit, "B1", total(fees), msgid=msgid))
            async with asyncio.timeout(1.5):  # Gansu's patient does not wait
                meanwhile = ok(await his.settle_visit(gs_payer, gs_visit, "B1", total(fees)))["setlinfo"]
            assert meanwhile["setl_id"]
            lost = await lost_task
    assert lost["infcode"] == -1 and "outcome is unknown" in lost["err_msg"], lost
    assert f"no answer within {PROVINCE_TIMEOUT_S:g} s" in lost["err_msg"], lost
    # The 2207 reaches the woken node after the gateway stopped waiting for it (answer_by), so the node refuses
    # it unapplied, before or after the reversal arrives: there is nothing to undo.
    undone = ok(await his.reverse(msgid, "2207", sx_payer.psn_no))
    assert undone["undone"] is False, undone
    assert (await me(admin, session))["personal_account_fen"] == 100_000
    # The batch is free again: a new 2207 settles it.
    again = ok(await his.settle_visit(sx_payer, sx_visit, "B1", total(fees)))["setlinfo"]
    assert again["medfee_sumamt"] == 95.0
