"""Paying at pharmacies through the gateway's national 两定机构 interface, on the real federation: a Ningxia person
pays at a Chengdu pharmacy (institution admdvs 510100; no Sichuan node runs here: money moves in the payer's home
province) by ID card, 医保码 and social-security card; the split between personal account, wallet, quota and
cash; what clearing records; a repeated msgid."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from launcher.client import FederationClient
from launcher.pos_client import Item, Payer, ok
from tests.conftest import Federation
from tests.e2e.flows import (
    bound_pair,
    eventually,
    face_login,
    me,
    money_totals,
    send,
    wait_transfer,
)
from tests.e2e.pos import (
    DEVICE,
    DRUG,
    TISSUES,
    UNKNOWN,
    Tills,
    balances,
    enrolled,
    family_with_wallet,
    hub_shows_cancelled,
    obligations,
    quota_used_is,
)

pytestmark = pytest.mark.federation


async def test_ningxia_person_pays_at_a_chengdu_pharmacy_by_id_card(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    wang = await enrolled(client, "640200", pa_fen=50_000)  # Mr Wang of Shizuishan, living in Chengdu
    session = await face_login(client, wang)
    before = await money_totals(client, federation)

    looked_up = await tills.chengdu.person("02", wang.id_no)
    assert looked_up["infcode"] == 0, looked_up
    base, insured = looked_up["output"]["baseinfo"], looked_up["output"]["insuinfo"][0]
    assert base["psn_no"] == session.psn_no and base["psn_name"] == wang.name
    assert base["certno"] == wang.id_no[:4] + "*" * 10 + wang.id_no[-4:]
    assert base["brdy"] == f"{wang.id_no[6:10]}-{wang.id_no[10:12]}-{wang.id_no[12:14]}"
    assert base["gend"] == ("1" if int(wang.id_no[16]) % 2 else "2") and isinstance(base["age"], int)
    assert insured == {"balc": 500.0, "insutype": "310", "psn_insu_stas": "1", "insuplc_admdvs": "640000",
                       "pooling_admdvs": "640200"}
    assert looked_up["output"]["mulaidinfo"] == {"wallet_balc": 0.0, "quota_balc": 0.0}
    assert len(looked_up["inf_refmsgid"]) == 30 and looked_up["inf_refmsgid"].startswith("510100")

    payer = Payer(base["psn_no"], "310", "02", wang.id_no, insured["insuplc_admdvs"])
    basket = [Item(DRUG, 2, "28.50"), Item(DEVICE, 1, "12.30")]  # 69.30 yuan, all eligible
    preview = ok(await tills.chengdu.presettle(payer, basket))["setlinfo"]
    assert await balances(client, session) == (50_000, None)  # a pre-settle moves nothing
    settled = await tills.chengdu.settle(payer, basket)
    assert settled["infcode"] == 0, settled
    info = settled["output"]["setlinfo"]
    assert {k: v for k, v in preview.items() if k not in ("mdtrt_id", "setl_time")} == \
        {k: v for k, v in info.items() if k not in ("mdtrt_id", "setl_time", "setl_id")}
    assert (info["medfee_sumamt"], info["fund_pay_sumamt"], info["psn_part_amt"]) == (69.3, 0.0, 69.3)
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"], info["balc"]) == (69.3, 0.0, 0.0, 430.7)
    assert len(info["setl_id"]) == 30 and info["clr_optins"] == "640000"
    assert await balances(client, session) == (50_000 - 6_930, None)
    after = await money_totals(client, federation)
    # The personal account paid the Chengdu pharmacy through Ningxia's clearing account; nothing was created.
    assert after["held_fen"] == before["held_fen"]
    assert after["clearing_fen"] - before["clearing_fen"] == 6_930
    # Ningxia owes Sichuan what the account paid.
    assert await obligations(federation, info["setl_id"]) == [("POS", "640000", "510000", 6_930)]


async def test_split_personal_account_then_wallet_then_cash_and_daily_goods_to_cash(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    mother, session = await family_with_wallet(client, "640100", relative_pa_fen=3_000, wallet_fen=50_000)
    payer = await tills.chengdu.payer("02", mother.id_no)
    assert ok(await tills.chengdu.person("02", mother.id_no))["mulaidinfo"] == {"wallet_balc": 500.0,
                                                                               "quota_balc": 0.0}
    # 100 yuan of drugs, tissues and an item the catalogue does not know: those two are cash whatever is held.
    basket = [Item(DRUG, 4, "25.00"), Item(TISSUES, 1, "5.00"), Item(UNKNOWN, 1, "2.50")]
    preview = ok(await tills.chengdu.presettle(payer, basket))
    paid = ok(await tills.chengdu.settle(payer, basket))
    for output in (preview, paid):
        info = output["setlinfo"]
        assert (info["medfee_sumamt"], info["inscp_scp_amt"], info["fulamt_ownpay_amt"]) == (107.5, 100.0, 7.5)
        # own personal account first (30), then the wallet (70), the rest cash (7.50)
        assert (info["acct_pay"], info["acct_mulaid_pay"], info["wallet_pay"], info["psn_cash_pay"]) == \
            (30.0, 70.0, 70.0, 7.5)
        assert (info["balc"], info["wallet_balc"]) == (0.0, 430.0)
        assert [(d["med_list_codg"], d["inscp_scp_amt"], d["fulamt_ownpay_amt"]) for d in output["feedetail"]] == \
            [(DRUG, 100.0, 0.0), (TISSUES, 0.0, 5.0), (UNKNOWN, 0.0, 2.5)]
    assert await balances(client, session) == (0, 43_000)
    # The account money is cleared to Sichuan: personal account and wallet parts together.
    assert await obligations(federation, paid["setlinfo"]["setl_id"]) == [("POS", "640000", "510000", 10_000)]

    # More than everything held: the rest is cash; acct_used_flag 0: all cash, nothing moves.
    big = ok(await tills.chengdu.settle(payer, [Item(DRUG, 20, "25.00")]))["setlinfo"]
    assert (big["acct_pay"], big["acct_mulaid_pay"], big["psn_cash_pay"]) == (0.0, 430.0, 70.0)
    cash = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "25.00")], acct_used=False))["setlinfo"]
    assert (cash["acct_pay"], cash["acct_mulaid_pay"], cash["psn_cash_pay"]) == (0.0, 0.0, 25.0)
    assert await balances(client, session) == (0, 0)


async def test_wallet_before_quota_and_cancel_gives_the_quota_back(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    """A mother in Gansu (resident: no personal account) holds 50 yuan in her wallet and a 300-yuan quota from
    her son in Ningxia; at a Chengdu pharmacy the wallet pays first, then the quota, tissues in cash."""
    pair = await bound_pair(client, "640100", "620100", relation="parent")
    sent = await send(client, pair, 5_000)
    assert (await wait_transfer(client, pair.giver_session, sent["transfer_id"]))["state"] == "CREDITED"
    quota = await client.call(pair.giver_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                              {"annual_quota_fen": 30_000}, idempotency_key=uuid.uuid4().hex)
    assert quota.status_code == 200, quota.text

    async def received() -> list[dict[str, Any]]:
        return list((await me(client, pair.relative_session))["quotas_received"])

    await eventually(lambda: quota_used_is(received, annual_fen=30_000, used_fen=0), "the mirror arrives")
    payer = await tills.chengdu.payer("02", pair.relative.id_no)
    assert ok(await tills.chengdu.person("02", pair.relative.id_no))["mulaidinfo"] == {"wallet_balc": 50.0,
                                                                                      "quota_balc": 300.0}
    basket = [Item(DRUG, 4, "25.00"), Item(TISSUES, 1, "3.00")]
    preview = ok(await tills.chengdu.presettle(payer, basket))["setlinfo"]
    info = ok(await tills.chengdu.settle(payer, basket))["setlinfo"]
    for split in (preview, info):
        assert (split["acct_pay"], split["wallet_pay"], split["quota_pay"], split["acct_mulaid_pay"],
                split["psn_cash_pay"]) == (0.0, 50.0, 50.0, 100.0, 3.0)
    assert (info["wallet_balc"], info["quota_balc"]) == (0.0, 250.0)
    assert await quota_used_is(received, annual_fen=30_000, used_fen=5_000)
    assert await obligations(federation, info["setl_id"]) == [("POS", "620000", "510000", 10_000)]

    ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))
    assert await quota_used_is(received, annual_fen=30_000, used_fen=0)
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 5_000


async def test_resident_pays_by_ec_token_and_by_social_security_card(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    card_no = f"M{random.randrange(10**8):08d}"
    # Li Jinshan of Guyuan: a resident (no personal account), wallet filled by his son, pays by card.
    _li, session = await family_with_wallet(client, "640400", relative_pa_fen=0, wallet_fen=20_000,
                                            relative_employee=False, card_no=card_no)
    by_card = ok(await tills.chengdu.person("03", card_no))
    assert by_card["baseinfo"]["psn_no"] == session.psn_no
    assert by_card["insuinfo"][0]["insutype"] == "390" and by_card["mulaidinfo"]["wallet_balc"] == 200.0
    payer = Payer(session.psn_no, "390", "03", card_no)
    info = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "45.00")]))["setlinfo"]
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"], info["balc"]) == (0.0, 45.0, 0.0, 0.0)
    assert await balances(client, session) == (None, 15_500)

    # The 医保码: issued by the home node, scanned by the till (type 01).
    issued = await client.call(session, "POST", "/v1/me/ec-token")
    assert issued.status_code == 200 and issued.json()["expires_in"] > 0
    token = issued.json()["ec_token"]
    by_code = ok(await tills.chengdu.person("01", token))
    assert by_code["baseinfo"]["psn_no"] == session.psn_no
    info = ok(await tills.chengdu.settle(Payer(session.psn_no, "390", "01", token),
                                         [Item(DRUG, 1, "5.00")]))["setlinfo"]
    assert info["acct_mulaid_pay"] == 5.0
    assert await balances(client, session) == (None, 15_000)
    # A till-facing token is no access token for the citizen API.
    as_bearer = await client.http.get(f"{client.node_url('640000')}/v1/me",
                                      headers={"authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    forged_reply = await tills.chengdu.person("01", token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert forged_reply["infcode"] == -1 and "医保码" in forged_reply["err_msg"]


async def test_same_province_settlement_is_not_cleared(federation: Federation, client: FederationClient,
                                                       tills: Tills) -> None:
    person = await enrolled(client, "640100", pa_fen=10_000)
    payer = await tills.yinchuan.payer("02", person.id_no)
    local = ok(await tills.yinchuan.settle(payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]
    remote = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]
    assert await obligations(federation, remote["setl_id"]) == [("POS", "640000", "510000", 1_000)]
    # What the gateway publishes about a settlement goes to the hub keyed by its setl_id, in order: once the hub
    # has the report of the local settlement's cancel, it has had whatever came before it about that settlement.
    ok(await tills.yinchuan.cancel(local["setl_id"], local["mdtrt_id"], payer.psn_no))
    await eventually(lambda: hub_shows_cancelled(client, federation, person.id_no, local["setl_id"]),
                     "the hub's supervision hears of the local settlement and its cancel")
    assert await obligations(federation, local["setl_id"], expected=0, timeout_s=0) == []


async def test_repeated_msgid_gets_the_original_answer_and_pays_once(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    msgid = tills.chengdu.new_msgid()
    envelope = tills.chengdu.envelope("2102", tills.chengdu.purchase(payer, [Item(DRUG, 1, "30.00")]), msgid=msgid)
    first = await tills.chengdu.send(envelope)
    again = await tills.chengdu.send(envelope)  # a new nonce and signature, the same message
    assert first == again and first[1]["infcode"] == 0
    assert await balances(client, session) == (7_000, None)
    other = await tills.chengdu.settle(payer, [Item(DRUG, 2, "30.00")], msgid=msgid)
    assert other["infcode"] == -1 and "already used" in other["err_msg"]
    assert await balances(client, session) == (7_000, None)
