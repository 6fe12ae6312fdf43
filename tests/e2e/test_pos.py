"""Paying at pharmacies through the gateway's national 两定机构 interface, on the real federation (issue 5,
points 1-7 and its "Bad input" list). A Ningxia person pays at a Chengdu pharmacy (institution admdvs 510100;
no Sichuan node runs here: money moves in the payer's home province), by ID card, 医保码 and social-security
card; cancels, reversals, lost answers and a province that is down; what clearing records; 3201."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from launcher import supervisor
from launcher.client import FederationClient, Session
from launcher.people import Person, new_person
from launcher.pos_client import DEMO_CATALOGUE, Item, Payer, PosClient, ok
from launcher.state import StatePaths, read_pid_file
from services.pharmacy_gateway.domain.tif_auth import tif_signature
from shared.clock import SHANGHAI
from shared.db import ReadView, open_database
from shared.settings import ServiceSettings
from tests.conftest import Federation
from tests.e2e.flows import (
    bound_pair,
    enrol,
    eventually,
    face_login,
    me,
    money_totals,
    send,
    wait_binding_state,
    wait_transfer,
)

pytestmark = pytest.mark.federation

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片 (blood pressure), drug
DEVICE = "C14010100001"  # 医用外科口罩, device
TISSUES = "RY0000000001"  # 面巾纸, daily goods: always cash
UNKNOWN = "ZZ9999999999"  # not in the catalogue: cash
PROVINCE_TIMEOUT_S = 3.0  # GatewaySettings.province_call_timeout_s (default)


# ------------------------------------------------------------------------------------------------ fixtures


def _code(prefix: str) -> str:
    return prefix + f"{random.randrange(10**7):07d}"


@dataclass
class Tills:
    chengdu: PosClient  # 510100 成都: every Ningxia, Gansu or Shaanxi payer is cross-province here
    chengdu_other: PosClient  # another Chengdu pharmacy
    yinchuan: PosClient  # 640100 银川: same province as Ningxia payers


async def _till(client: FederationClient, name: str, admdvs: str) -> PosClient:
    registration = await client.register_institution(_code("P" + admdvs[:4]), name, admdvs)
    till = PosClient.registered(client.gateway_url(), registration)
    await till.sign_in()
    return till


@pytest.fixture(scope="module")
async def admin(federation: Federation) -> AsyncIterator[FederationClient]:
    api = federation.client()
    try:
        yield api
    finally:
        await api.aclose()


@pytest.fixture(scope="module")
async def tills(admin: FederationClient) -> AsyncIterator[Tills]:
    await admin.import_catalogue(DEMO_CATALOGUE)
    made = Tills(await _till(admin, "成都康泰大药房", "510100"), await _till(admin, "成都仁和药房", "510100"),
                 await _till(admin, "银川新华药店", "640100"))
    try:
        yield made
    finally:
        for till in (made.chengdu, made.chengdu_other, made.yinchuan):
            await till.aclose()


async def _enrolled(client: FederationClient, pooling: str, *, pa_fen: int = 100_000, employee: bool = True,
                    card_no: str | None = None) -> Person:
    person = new_person(pooling, employee=employee, personal_account_fen=pa_fen)
    body = person.import_body() | ({"card_no": card_no} if card_no else {})
    result = await client.import_persons(person.admdvs, [body])
    assert result["rejected"] == [], result
    return person


async def _balances(client: FederationClient, session: Session) -> tuple[int | None, int | None]:
    mine = await me(client, session)
    return mine["personal_account_fen"], (mine["wallet"] or {}).get("balance_fen")


def _today() -> date:
    """Settlement days are Asia/Shanghai dates (3201)."""
    return datetime.now(SHANGHAI).date()


async def _obligations(federation: Federation, setl_id: str, expected: int = 1,
                       timeout_s: float = 15) -> list[tuple[str, str, str, int]]:
    """(kind, debtor, creditor, amount_fen) the hub recorded for a settlement, read from the hub's database
    (the operator views of clearing are another issue's), waiting until `expected` are there."""
    database = await open_database(ServiceSettings(home=federation.home), "hub")
    table = sa.table("clearing_obligations", sa.column("id"), sa.column("kind"), sa.column("ref"),
                     sa.column("debtor_admdvs"), sa.column("creditor_admdvs"), sa.column("amount_fen"))
    deadline = time.monotonic() + timeout_s
    rows: list[tuple[str, str, str, int]] = []
    try:
        while time.monotonic() < deadline:
            async with ReadView(database) as view:
                found = await view.execute(sa.select(table.c.kind, table.c.debtor_admdvs, table.c.creditor_admdvs,
                                                     table.c.amount_fen)
                                           .where(table.c.ref.like(f"POS:{setl_id}:%")).order_by(table.c.id))
                rows = [tuple(row) for row in found]  # type: ignore[misc]
            if len(rows) >= expected:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await database.dispose()
    return rows


@contextlib.contextmanager
def frozen(federation: Federation, service: str) -> Iterator[None]:
    """SIGSTOP one service of our test federation (a province that accepts connections but never answers),
    SIGCONT on the way out."""
    record = read_pid_file(StatePaths(federation.home.resolve()).pid_file(service))
    assert record is not None
    os.kill(record.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(record.pid, signal.SIGCONT)


# ------------------------------------------------------------------------------------------------ points 1-4


async def test_ningxia_person_pays_at_a_chengdu_pharmacy_by_id_card(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    wang = await _enrolled(client, "640200", pa_fen=50_000)  # Mr Wang of Shizuishan, living in Chengdu
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
    assert await _balances(client, session) == (50_000, None)  # a pre-settle moves nothing
    settled = await tills.chengdu.settle(payer, basket)
    assert settled["infcode"] == 0, settled
    info = settled["output"]["setlinfo"]
    assert {k: v for k, v in preview.items() if k not in ("mdtrt_id", "setl_time")} == \
        {k: v for k, v in info.items() if k not in ("mdtrt_id", "setl_time", "setl_id")}
    assert (info["medfee_sumamt"], info["fund_pay_sumamt"], info["psn_part_amt"]) == (69.3, 0.0, 69.3)
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"], info["balc"]) == (69.3, 0.0, 0.0, 430.7)
    assert len(info["setl_id"]) == 30 and info["clr_optins"] == "640000"
    assert await _balances(client, session) == (50_000 - 6_930, None)
    after = await money_totals(client, federation)
    # The personal account paid the Chengdu pharmacy through Ningxia's clearing account; nothing was created.
    assert after["held_fen"] == before["held_fen"]
    assert after["clearing_fen"] - before["clearing_fen"] == 6_930
    # Ningxia owes Sichuan what the account paid.
    assert await _obligations(federation, info["setl_id"]) == [("POS", "640000", "510000", 6_930)]


async def _family_with_wallet(client: FederationClient, relative_pooling: str, *, relative_pa_fen: int,
                              wallet_fen: int, relative_employee: bool = True,
                              card_no: str | None = None) -> tuple[Person, Session]:
    """A relative whose wallet a child (employee, Ningxia) filled by a transfer."""
    giver = new_person("640100", personal_account_fen=1_000_000)
    relative = new_person(relative_pooling, employee=relative_employee, personal_account_fen=relative_pa_fen)
    await enrol(client, giver)
    body = relative.import_body() | ({"card_no": card_no} if card_no else {})
    assert (await client.import_persons(relative.admdvs, [body]))["rejected"] == []
    await client.import_kinship([{"id_no_a": giver.id_no, "id_no_b": relative.id_no, "relation": "parent"}])
    giver_session, relative_session = await face_login(client, giver), await face_login(client, relative)
    assert (await client.call(relative_session, "POST", "/v1/wallet:open")).status_code == 201
    created = await client.call(giver_session, "POST", "/v1/bindings", {
        "relative_id_no": relative.id_no, "relative_name": relative.name, "relation": "parent"})
    binding_id = created.json()["binding_id"]
    assert (await client.call(relative_session, "POST", f"/v1/bindings/{binding_id}:confirm")).status_code == 200
    await wait_binding_state(client, giver_session, binding_id, "ACTIVE")
    sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": binding_id,
                                                                      "amount_fen": wallet_fen},
                             idempotency_key=uuid.uuid4().hex)
    assert sent.status_code == 202, sent.text
    assert (await wait_transfer(client, giver_session, sent.json()["transfer_id"]))["state"] == "CREDITED"
    return relative, relative_session


async def test_split_personal_account_then_wallet_then_cash_and_daily_goods_to_cash(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    mother, session = await _family_with_wallet(client, "640100", relative_pa_fen=3_000, wallet_fen=50_000)
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
    assert await _balances(client, session) == (0, 43_000)
    # The account money is cleared to Sichuan: personal account and wallet parts together.
    assert await _obligations(federation, paid["setlinfo"]["setl_id"]) == [("POS", "640000", "510000", 10_000)]

    # More than everything held: the rest is cash; acct_used_flag 0: all cash, nothing moves.
    big = ok(await tills.chengdu.settle(payer, [Item(DRUG, 20, "25.00")]))["setlinfo"]
    assert (big["acct_pay"], big["acct_mulaid_pay"], big["psn_cash_pay"]) == (0.0, 430.0, 70.0)
    cash = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "25.00")], acct_used=False))["setlinfo"]
    assert (cash["acct_pay"], cash["acct_mulaid_pay"], cash["psn_cash_pay"]) == (0.0, 0.0, 25.0)
    assert await _balances(client, session) == (0, 0)


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

    await eventually(lambda: _quota_used_is(received, annual_fen=30_000, used_fen=0), "the mirror arrives")
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
    assert await _quota_used_is(received, annual_fen=30_000, used_fen=5_000)
    assert await _obligations(federation, info["setl_id"]) == [("POS", "620000", "510000", 10_000)]

    ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))
    assert await _quota_used_is(received, annual_fen=30_000, used_fen=0)
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 5_000


async def _quota_used_is(received: Callable[[], Awaitable[list[dict[str, Any]]]], *, annual_fen: int,
                         used_fen: int) -> bool:
    quotas = await received()
    return len(quotas) == 1 and (quotas[0]["annual_quota_fen"], quotas[0]["used_fen"]) == (annual_fen, used_fen)



async def test_resident_pays_by_ec_token_and_by_social_security_card(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    card_no = f"M{random.randrange(10**8):08d}"
    # Li Jinshan of Guyuan: a resident (no personal account), wallet filled by his son, pays by card.
    _li, session = await _family_with_wallet(client, "640400", relative_pa_fen=0, wallet_fen=20_000,
                                            relative_employee=False, card_no=card_no)
    by_card = ok(await tills.chengdu.person("03", card_no))
    assert by_card["baseinfo"]["psn_no"] == session.psn_no
    assert by_card["insuinfo"][0]["insutype"] == "390" and by_card["mulaidinfo"]["wallet_balc"] == 200.0
    payer = Payer(session.psn_no, "390", "03", card_no)
    info = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "45.00")]))["setlinfo"]
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"], info["balc"]) == (0.0, 45.0, 0.0, 0.0)
    assert await _balances(client, session) == (None, 15_500)

    # The 医保码: issued by the home node, scanned by the till (type 01).
    issued = await client.call(session, "POST", "/v1/me/ec-token")
    assert issued.status_code == 200 and issued.json()["expires_in"] > 0
    token = issued.json()["ec_token"]
    by_code = ok(await tills.chengdu.person("01", token))
    assert by_code["baseinfo"]["psn_no"] == session.psn_no
    info = ok(await tills.chengdu.settle(Payer(session.psn_no, "390", "01", token),
                                         [Item(DRUG, 1, "5.00")]))["setlinfo"]
    assert info["acct_mulaid_pay"] == 5.0
    assert await _balances(client, session) == (None, 15_000)
    # A till-facing token is no access token for the citizen API.
    as_bearer = await client.http.get(f"{client.node_url('640000')}/v1/me",
                                      headers={"authorization": f"Bearer {token}"})
    assert as_bearer.status_code == 401
    forged_reply = await tills.chengdu.person("01", token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert forged_reply["infcode"] == -1 and "医保码" in forged_reply["err_msg"]


async def test_same_province_settlement_is_not_cleared(federation: Federation, client: FederationClient,
                                                       tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    payer = await tills.yinchuan.payer("02", person.id_no)
    local = ok(await tills.yinchuan.settle(payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]
    remote = ok(await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]
    assert await _obligations(federation, remote["setl_id"]) == [("POS", "640000", "510000", 1_000)]
    await asyncio.sleep(0.5)
    assert await _obligations(federation, local["setl_id"], expected=0, timeout_s=0) == []


# ------------------------------------------------------------------------------------------------ point 5


async def test_repeated_msgid_gets_the_original_answer_and_pays_once(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    msgid = tills.chengdu.new_msgid()
    envelope = tills.chengdu.envelope("2102", tills.chengdu.purchase(payer, [Item(DRUG, 1, "30.00")]), msgid=msgid)
    first = await tills.chengdu.send(envelope)
    again = await tills.chengdu.send(envelope)  # a new nonce and signature, the same message
    assert first == again and first[1]["infcode"] == 0
    assert await _balances(client, session) == (7_000, None)
    other = await tills.chengdu.settle(payer, [Item(DRUG, 2, "30.00")], msgid=msgid)
    assert other["infcode"] == -1 and "already used" in other["err_msg"]
    assert await _balances(client, session) == (7_000, None)


async def test_cancel_returns_each_part_where_it_came_from(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    mother, session = await _family_with_wallet(client, "640300", relative_pa_fen=2_000, wallet_fen=10_000)
    payer = await tills.chengdu.payer("02", mother.id_no)
    before = await money_totals(client, federation)
    info = ok(await tills.chengdu.settle(payer, [Item(DRUG, 2, "40.00"), Item(TISSUES, 1, "3.00")]))["setlinfo"]
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"]) == (20.0, 60.0, 3.0)
    assert await _balances(client, session) == (0, 4_000)

    # Another pharmacy cannot cancel it, nor can the right one for another person.
    foreign = await tills.chengdu_other.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no)
    assert foreign["infcode"] == -1 and "another institution" in foreign["err_msg"]
    wrong_person = await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], "640000" + "0" * 10)
    assert wrong_person["infcode"] == -1
    assert await _balances(client, session) == (0, 4_000)

    cancelled = ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))["setlinfo"]
    assert (cancelled["acct_pay"], cancelled["acct_mulaid_pay"], cancelled["cash_payamt"],
            cancelled["psn_pay"]) == (20.0, 60.0, 3.0, 83.0)
    assert (cancelled["balc"], cancelled["wallet_balc"], cancelled["setl_state"]) == (20.0, 100.0, "CANCELLED")
    assert await _balances(client, session) == (2_000, 10_000)
    assert await money_totals(client, federation) == before
    # Clearing: the charge, then its withdrawal.
    assert await _obligations(federation, info["setl_id"], expected=2) == [
        ("POS", "640000", "510000", 8_000), ("POS_REFUND", "640000", "510000", -8_000)]
    again = ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))  # moves nothing
    assert again["setlinfo"]["setl_state"] == "CANCELLED"
    assert await _balances(client, session) == (2_000, 10_000)


async def test_reversal_undoes_a_settle_or_a_cancel_and_refuses_a_presettle(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    till = tills.chengdu

    pre_msgid = till.new_msgid()
    ok(await till.call("2101", till.purchase(payer, [Item(DRUG, 1, "10.00")]), msgid=pre_msgid))
    refused = await till.reverse(pre_msgid, "2101", payer.psn_no)
    assert refused["infcode"] == -1 and "2101" in refused["err_msg"]
    mislabelled = await till.reverse(pre_msgid, "2102", payer.psn_no)
    assert mislabelled["infcode"] == -1 and "2101" in mislabelled["err_msg"]

    settle_msgid = till.new_msgid()
    info = ok(await till.settle(payer, [Item(DRUG, 1, "10.00")], msgid=settle_msgid))["setlinfo"]
    assert await _balances(client, session) == (9_000, None)
    undone = ok(await till.reverse(settle_msgid, "2102", payer.psn_no))
    assert undone["undone"] is True and undone["setlinfo"]["setl_state"] == "REVERSED"
    assert await _balances(client, session) == (10_000, None)
    assert ok(await till.reverse(settle_msgid, "2102", payer.psn_no))["undone"] is False  # once only
    gone = await till.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no)
    assert gone["infcode"] == -1 and "reversed" in gone["err_msg"]
    assert await _obligations(federation, info["setl_id"], expected=2) == [
        ("POS", "640000", "510000", 1_000), ("POS_REFUND", "640000", "510000", -1_000)]

    # Reversing a cancel puts the settlement back in force (charged again).
    info = ok(await till.settle(payer, [Item(DRUG, 2, "10.00")]))["setlinfo"]
    cancel_msgid = till.new_msgid()
    ok(await till.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no, msgid=cancel_msgid))
    assert await _balances(client, session) == (10_000, None)
    restored = ok(await till.reverse(cancel_msgid, "2103", payer.psn_no))
    assert restored["undone"] is True and restored["setlinfo"]["setl_state"] == "SETTLED"
    assert await _balances(client, session) == (8_000, None)
    assert [kind for kind, *_ in await _obligations(federation, info["setl_id"], expected=3)] == \
        ["POS", "POS_REFUND", "POS"]


async def _at_ningxia_node(client: FederationClient, federation: Federation, action: str,
                           body: dict[str, Any]) -> httpx.Response:
    """A call of the Ningxia node's internal POS API, as the gateway makes it."""
    return await client.http.post(f"{client.node_url('640000')}/internal/v1/pos/payments:{action}", json=body,
                                  headers={"authorization": f"Bearer {federation.internal_token}"})


async def _settle_at_ningxia_node(client: FederationClient, federation: Federation, till: PosClient, payer: Payer,
                                  msgid: str) -> httpx.Response:
    """10 yuan from the payer's personal account, asked of the node straight, past the gateway."""
    return await _at_ningxia_node(client, federation, "settle", {
        "msgid": msgid, "psn_no": payer.psn_no, "insutype": "310", "fixmedins_code": till.fixmedins_code,
        "medfee_fen": 1000, "eligible_fen": 1000, "use_accounts": True})


async def test_a_reversal_before_its_original_refuses_the_late_original(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    late_msgid = tills.chengdu.new_msgid()
    nothing = ok(await tills.chengdu.reverse(late_msgid, "2102", payer.psn_no))
    assert nothing["undone"] is False
    late = await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")], msgid=late_msgid)
    assert late["infcode"] == -1 and "reversed" in late["err_msg"]
    assert await _balances(client, session) == (10_000, None)

    # The same rule at the node itself (the gateway asks it when the original is in flight there).
    omsgid, rmsgid = tills.chengdu.new_msgid(), tills.chengdu.new_msgid()
    reversed_first = await _at_ningxia_node(client, federation, "reverse", {
        "msgid": rmsgid, "omsgid": omsgid, "oinfno": "2102", "psn_no": payer.psn_no,
        "fixmedins_code": tills.chengdu.fixmedins_code})
    assert reversed_first.status_code == 200 and reversed_first.json()["effect"] == "NONE"
    original = await _settle_at_ningxia_node(client, federation, tills.chengdu, payer, omsgid)
    assert original.status_code == 409 and original.json()["error"]["code"] == "MSGID_REVERSED"
    assert await _balances(client, session) == (10_000, None)


async def test_a_reversal_finds_a_settle_the_gateway_never_logged(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    """The gateway restarted after the payer's node applied a 2102 and before the gateway's log of it was
    committed: its 2601 asks the payer's home province (where the psn_no says), which gives the money back,
    and the original, sent again, is refused."""
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    msgid = tills.chengdu.new_msgid()
    applied = await _settle_at_ningxia_node(client, federation, tills.chengdu, payer, msgid)
    assert applied.status_code == 200, applied.text
    assert await _balances(client, session) == (9_000, None)

    undone = ok(await tills.chengdu.reverse(msgid, "2102", payer.psn_no))
    assert undone["undone"] is True and undone["setlinfo"]["setl_state"] == "REVERSED"
    assert await _balances(client, session) == (10_000, None)
    again = await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")], msgid=msgid)
    assert again["infcode"] == -1 and "reversed" in again["err_msg"]
    assert await _balances(client, session) == (10_000, None)


async def test_lost_answer_then_reversal_makes_both_sides_agree(
        federation: Federation, client: FederationClient, admin: FederationClient) -> None:
    """The payer's node is stuck (SIGSTOP): the till gets -1 "outcome unknown" within the timeout; the settle
    still happens when the node wakes; the reversal then gives the money back, and the gateway's 3201 and the
    hub's clearing show nothing, as the node does."""
    till = await _till(admin, "成都大药房(断线)", "510100")
    try:
        person = await _enrolled(client, "610100", pa_fen=10_000)
        session = await face_login(client, person)
        payer = await till.payer("02", person.id_no)
        msgid = till.new_msgid()
        envelope = till.envelope("2102", till.purchase(payer, [Item(DRUG, 1, "20.00")]), msgid=msgid)
        with frozen(federation, "node-610000"):
            started = time.monotonic()
            status, lost = await till.send(envelope)
            waited_s = time.monotonic() - started
        assert status == 200 and lost["infcode"] == -1 and "outcome is unknown" in lost["err_msg"], lost
        assert PROVINCE_TIMEOUT_S - 0.5 < waited_s < PROVINCE_TIMEOUT_S + 2
        await asyncio.sleep(1.0)  # the woken node works through what was queued
        assert await till.send(envelope) == (200, lost)  # a repeat gets the original answer
        undone = ok(await till.reverse(msgid, "2102", payer.psn_no))
        assert await _balances(client, session) == (10_000, None)
        if undone["undone"]:
            assert undone["setlinfo"]["setl_state"] == "REVERSED"
            assert await _obligations(federation, undone["setlinfo"]["setl_id"], expected=0, timeout_s=1) == []
        today = _today()
        stmt = ok(await till.reconcile(today - timedelta(days=1), today + timedelta(days=1)))["stmtinfo"]
        assert (stmt["fixmedins_setl_cnt"], stmt["medfee_sumamt"]) == (0, 0.0)
    finally:
        await till.aclose()


async def test_a_province_that_is_down_fails_fast_for_its_people_only(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    gansu = await _enrolled(client, "620100", pa_fen=10_000)
    ningxia = await _enrolled(client, "640100", pa_fen=10_000)
    gansu_payer = await tills.chengdu.payer("02", gansu.id_no)
    ningxia_payer = await tills.chengdu.payer("02", ningxia.id_no)
    supervisor.signal_service(federation.home, "node-620000", signal.SIGTERM)
    try:
        started = time.monotonic()
        down = await tills.chengdu.settle(gansu_payer, [Item(DRUG, 1, "10.00")])
        assert time.monotonic() - started < PROVINCE_TIMEOUT_S
        assert down["infcode"] == -1 and "620000" in down["err_msg"] and "nothing was charged" in down["err_msg"]
        looked_up = await tills.chengdu.person("02", gansu.id_no)
        assert looked_up["infcode"] == -1 and "unavailable" in looked_up["err_msg"]
        paid = await asyncio.gather(*(tills.chengdu.settle(ningxia_payer, [Item(DRUG, 1, "10.00")])
                                      for _ in range(5)))
        assert [p["infcode"] for p in paid] == [0] * 5
    finally:
        supervisor.restart_service(federation.home, "node-620000")
    assert ok(await tills.chengdu.settle(gansu_payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]["acct_pay"] == 10.0


# ------------------------------------------------------------------------------------------------ point 7


async def test_reconciliation_counts_and_totals_what_was_settled(
        federation: Federation, client: FederationClient, admin: FederationClient) -> None:
    till = await _till(admin, "成都对账药房", "510100")
    try:
        person = await _enrolled(client, "640100", pa_fen=5_000)
        payer = await till.payer("02", person.id_no)
        kept = ok(await till.settle(payer, [Item(DRUG, 2, "20.00"), Item(TISSUES, 1, "4.00")]))["setlinfo"]
        kept2 = ok(await till.settle(payer, [Item(DRUG, 1, "30.00")]))["setlinfo"]  # 10 from PA, 20 cash
        dropped = ok(await till.settle(payer, [Item(DRUG, 1, "1.00")]))["setlinfo"]
        ok(await till.cancel(dropped["setl_id"], dropped["mdtrt_id"], payer.psn_no))
        today = _today()
        first, last = today - timedelta(days=1), today + timedelta(days=1)
        stmt = ok(await till.reconcile(first, last))["stmtinfo"]
        assert (stmt["fixmedins_setl_cnt"], stmt["cancelled_cnt"]) == (2, 1)
        assert (stmt["medfee_sumamt"], stmt["fund_pay_sumamt"], stmt["acct_pay"], stmt["acct_mulaid_pay"],
                stmt["psn_cash_pay"]) == (74.0, 0.0, 50.0, 0.0, 24.0)
        assert kept["acct_pay"] + kept2["acct_pay"] == 50.0
        agree = ok(await till.reconcile(first, last, medfee_sumamt=Decimal("74.00"), acct_pay=Decimal("50.00"),
                                        fund_pay_sumamt=Decimal("0"), fixmedins_setl_cnt=2))["stmtinfo"]
        assert (agree["stmt_rslt"], agree["stmt_rslt_dscr"]) == ("0", "totals agree")
        disagree = ok(await till.reconcile(first, last, medfee_sumamt=Decimal("75.00"),
                                           fixmedins_setl_cnt=3))["stmtinfo"]
        assert disagree["stmt_rslt"] == "1" and "medfee_sumamt" in disagree["stmt_rslt_dscr"]
        other_days = ok(await till.reconcile(today - timedelta(days=10), today - timedelta(days=2)))["stmtinfo"]
        assert other_days["fixmedins_setl_cnt"] == 0
        # Another institution sees only its own.
        assert ok(await till.reconcile(first, last))["stmtinfo"]["fixmedins_setl_cnt"] == 2
        bad = await till.reconcile(last, first)
        assert bad["infcode"] == -1 and "before" in bad["err_msg"]
    finally:
        await till.aclose()


# ------------------------------------------------------------------------------------------------ bad input


async def test_authentication_failures_are_401_and_change_nothing(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    till = tills.chengdu
    payer = await till.payer("02", person.id_no)
    body = till.purchase(payer, [Item(DRUG, 1, "10.00")])
    before = await money_totals(client, federation)

    def headers(**changes: str) -> dict[str, str]:
        signed = till.signed_headers()
        signed.update(changes)
        return signed

    stale_ts = str(int(time.time()) - 301)
    stale = headers(**{"x-tif-timestamp": stale_ts})
    stale["x-tif-signature"] = tif_signature(stale_ts, till.paas_token, stale["x-tif-nonce"])
    replayed = till.signed_headers()
    first = await till.send(till.envelope("2102", body), replayed)
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
    assert await _balances(client, session) == (9_000, None)  # only the one good settle
    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"] and after["clearing_fen"] - before["clearing_fen"] == 1_000


async def test_bad_messages_get_infcode_minus_one_and_move_nothing(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await _enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    till = tills.chengdu
    payer = await till.payer("02", person.id_no)
    before = await money_totals(client, federation)

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
                              till.paas_id, till.paas_token)
    try:
        refused = await not_signed_in.settle(payer, [Item(DRUG, 1, "1.00")])
        assert refused["infcode"] == -1 and "sign in" in refused["err_msg"]
    finally:
        await not_signed_in.aclose()
    assert await _balances(client, session) == (10_000, None)
    assert await money_totals(client, federation) == before


async def test_gateway_admin_needs_the_operator_token(federation: Federation, client: FederationClient) -> None:
    url = f"{client.gateway_url()}/v1/admin/institutions"
    body = {"fixmedins_code": _code("P6401"), "fixmedins_name": "药房", "admdvs": "640100"}
    assert (await client.http.post(url, json=body)).status_code == 401
    operator = {"authorization": f"Bearer {federation.operator_token}", "idempotency-key": uuid.uuid4().hex}
    first = await client.http.post(url, json=body, headers=operator)
    again = await client.http.post(url, json=body, headers=operator)
    assert first.status_code == 201 and again.json() == first.json()
    assert (await client.http.post(url, json=body | {"fixmedins_code": "short"}, headers={
        "authorization": f"Bearer {federation.operator_token}"})).status_code == 422
    catalogue = await client.http.post(f"{client.gateway_url()}/v1/admin/catalogue:import", json={
        "items": [{"med_list_codg": "X1", "name": "x", "category": "toys"}]},
        headers={"authorization": f"Bearer {federation.operator_token}"})
    assert catalogue.status_code == 422
