"""The national 两定机构 interface's refusals, in process: the gateway's real app over a fake payer's node
(tests/support/gateway.py). Each x-tif authentication failure is a 401 and changes nothing; each bad message is
HTTP 200 with infcode -1 and an err_msg naming what was wrong, and reaches no node; the admin API needs the
operator token. (Moved from tests/e2e/test_pos.py: these matrices test the gateway's own checks, not the
federation.)"""

from __future__ import annotations

import random
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from launcher.people import new_person
from launcher.pos_client import Item, PosClient, ok
from services.pharmacy_gateway.domain.tif_auth import tif_signature
from shared.clock import SHANGHAI
from tests.support.gateway import InProcessGateway

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片 (blood pressure), drug
TISSUES = "RY0000000001"  # 面巾纸, daily goods: always cash
MONEY_CALLS = {"settle", "cancel", "reverse"}


async def _settled_count(till: PosClient) -> int:
    today = datetime.now(SHANGHAI).date()
    stmt = ok(await till.reconcile(today - timedelta(days=1), today + timedelta(days=1)))["stmtinfo"]
    count: int = stmt["fixmedins_setl_cnt"]
    return count


async def test_authentication_failures_are_401_and_change_nothing(gateway: InProcessGateway,
                                                                  till: PosClient) -> None:
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)
    body = till.purchase(payer, [Item(DRUG, 1, "10.00")])

    def headers(**changes: str) -> dict[str, str]:
        signed = till.signed_headers()
        signed.update(changes)
        return signed

    stale_ts = str(int(time.time()) - 301)
    stale = headers(**{"x-tif-timestamp": stale_ts})
    stale["x-tif-signature"] = tif_signature(stale_ts, till.paas_token, stale["x-tif-nonce"])
    replayed = till.signed_headers()
    good = till.envelope("2102", body)
    first = await till.send(good, replayed)
    assert first[0] == 200 and first[1]["infcode"] == 0
    cases = {
        "wrong signature": headers(**{"x-tif-signature": "0" * 64}),
        "signed with another token": headers(**{"x-tif-signature": tif_signature(
            str(int(time.time())), "not-the-token", "abcdefgh12345678")}),
        "stale timestamp": stale,
        "replayed nonce": replayed,
        "unknown paasid": headers(**{"x-tif-paasid": "PAAS" + "0" * 32}),
        "no signature": {k: v for k, v in till.signed_headers().items() if k != "x-tif-signature"},
        "no headers": {"content-type": "application/json"},
    }
    for case, sent_headers in cases.items():
        status, answer = await till.send(till.envelope("2102", body), sent_headers)
        assert (status, answer["infcode"]) == (401, -1), case
        assert answer["err_msg"], case
    # Only the one good settle reached the payer's node and was charged (10 yuan from the personal account).
    assert [call for call in gateway.node.calls if call[0] in MONEY_CALLS] == [("settle", good["msgid"])]
    assert account.personal_account_fen == 9_000
    assert await _settled_count(till) == 1


async def test_bad_messages_get_infcode_minus_one_and_move_nothing(gateway: InProcessGateway,
                                                                   till: PosClient) -> None:
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)

    def purchase(**data_changes: Any) -> dict[str, Any]:
        body = till.purchase(payer, [Item(DRUG, 2, "10.00"), Item(TISSUES, 1, "3.00")])
        body["data"].update(data_changes)
        return body

    def with_line(**line_changes: Any) -> dict[str, Any]:
        body = purchase()
        body["drugdetail"][0].update(line_changes)
        return body

    stranger = new_person("640100")  # a valid ID number nobody enrolled
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("29-character msgid", till.envelope("2102", purchase(), msgid=till.new_msgid()[:29]), "30 characters"),
        ("another institution's code", till.envelope("2102", purchase()) | {"fixmedins_code": "P51019999999"},
         "fixmedins_code"),
        ("msgid of another institution", till.envelope("2102", purchase(),
                                                       msgid="P51019999999" + till.new_msgid()[12:]), "msgid"),
        ("unknown infno", till.envelope("9999", purchase()), "infno"),
        ("unknown person", till.envelope("1101", {"data": {"mdtrt_cert_type": "02",
                                                           "mdtrt_cert_no": stranger.id_no}}), "no insured person"),
        ("invalid ID number", till.envelope("1101", {"data": {"mdtrt_cert_type": "02",
                                                              "mdtrt_cert_no": "640102199001011230"}}), "GB 11643"),
        ("unknown card", till.envelope("1101", {"data": {"mdtrt_cert_type": "03", "mdtrt_cert_no": "NO-SUCH-CARD"}}),
         "no insured person"),
        ("unknown certificate type", till.envelope("1101", {"data": {"mdtrt_cert_type": "09",
                                                                     "mdtrt_cert_no": "x"}}), "mdtrt_cert_type"),
        ("parts do not add up", till.envelope("2102", purchase(medfee_sumamt=Decimal("24.00"))), "add up"),
        ("cnt × pric is not the line fee", till.envelope("2102", with_line(det_item_fee_sumamt=Decimal("21.00"))),
         "cnt × pric"),
        ("three decimals", till.envelope("2102", with_line(pric=Decimal("10.005"))), "two decimals"),
        ("negative amount", till.envelope("2102", purchase(medfee_sumamt=Decimal("-23.00"))), "negative"),
        ("amount as text garbage", till.envelope("2102", purchase(medfee_sumamt="abc")), "medfee_sumamt"),
        ("psn_no of someone else", till.envelope("2102", purchase(psn_no="640000" + "1" * 10)), "psn_no"),
        ("no items", till.envelope("2102", purchase() | {"drugdetail": []}), "drugdetail"),
        ("wrong med_type", till.envelope("2102", purchase(med_type="11")), "med_type"),
        ("input not an object", till.envelope("2102", {}) | {"input": "x"}, "input"),
        ("reversal of a pre-settle", till.envelope("2601", {"data": {"psn_no": payer.psn_no, "omsgid":
                                                                     till.new_msgid(), "oinfno": "2101"}}), "2101"),
        ("cancel of an unknown settlement", till.envelope("2103", {"data": {
            "setl_id": "640000" + "0" * 24, "mdtrt_id": "x", "psn_no": payer.psn_no}}), "no settlement"),
    ]
    for case, envelope, expected in cases:
        status, answer = await till.send(envelope)
        assert status == 200, (case, answer)
        assert answer["infcode"] == -1 and expected in answer["err_msg"], (case, answer)
        assert set(answer) == {"infcode", "inf_refmsgid", "refmsg_time", "respond_time", "err_msg", "output"}

    for raw in (b"{not json", b"[]", b""):
        response = await till.http.post(till.gateway_url + "/fsi/api/rsfComIfsService/callService", content=raw,
                                        headers=till.signed_headers())
        assert response.status_code == 200 and response.json()["infcode"] == -1, raw

    not_signed_in = PosClient(till.gateway_url, till.fixmedins_code, till.fixmedins_name, till.admdvs,
                              till.paas_id, till.paas_token, http=gateway.http)
    refused = await not_signed_in.settle(payer, [Item(DRUG, 1, "1.00")])
    assert refused["infcode"] == -1 and "sign in" in refused["err_msg"]
    # No message moved money: the payer's node was asked nothing but who the payer is.
    assert [method for method, _ in gateway.node.calls if method in MONEY_CALLS] == []
    assert account.personal_account_fen == 10_000
    assert await _settled_count(till) == 0


async def test_gateway_admin_needs_the_operator_token(gateway: InProcessGateway) -> None:
    url = "/v1/admin/institutions"
    body = {"fixmedins_code": f"P6401{random.randrange(10**7):07d}", "fixmedins_name": "药房", "admdvs": "640100"}
    assert (await gateway.http.post(url, json=body)).status_code == 401
    operator = gateway.operator_headers(idempotency_key=uuid.uuid4().hex)
    first = await gateway.http.post(url, json=body, headers=operator)
    again = await gateway.http.post(url, json=body, headers=operator)
    assert first.status_code == 201 and again.json() == first.json()
    assert (await gateway.http.post(url, json=body | {"fixmedins_code": "short"},
                                    headers=gateway.operator_headers())).status_code == 422
    catalogue = await gateway.http.post("/v1/admin/catalogue:import", json={
        "items": [{"med_list_codg": "X1", "name": "x", "category": "toys"}]}, headers=gateway.operator_headers())
    assert catalogue.status_code == 422
