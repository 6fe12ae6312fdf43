"""The first capability end to end on the real federation: bindings and transfers across provinces."""

from __future__ import annotations

import re
import uuid

import pytest

from launcher.client import FederationClient
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, me, money_totals, send, wait_transfer

pytestmark = pytest.mark.federation


async def test_daughter_in_yinchuan_sends_500_yuan_to_her_mother_in_gansu(
        federation: Federation, client: FederationClient) -> None:
    before = await money_totals(client, federation)
    pair = await bound_pair(client, "640100", "620100", relation="parent")
    giver_before = (await me(client, pair.giver_session))["personal_account_fen"]

    accepted = await send(client, pair, 50_000)
    assert accepted["state"] == "ACCEPTED"
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED" and done["amount_fen"] == 50_000 and "credited_at" in done

    mother = await me(client, pair.relative_session)
    assert mother["wallet"] == {"status": "OPEN", "balance_fen": 50_000}
    assert mother["personal_account_fen"] is None  # a resident has no personal account
    assert (await me(client, pair.giver_session))["personal_account_fen"] == giver_before - 50_000
    notices = (await client.call(pair.relative_session, "GET", "/v1/notifications")).json()
    # Her notices: asked to confirm the binding, then the money.
    assert [re.sub(r"确认 \d{6}", "确认 ######", n["text"]) for n in notices] == [
        "您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认，或回复“确认 ######”即可完成绑定",
                                            "您的共济账户已收到500元"]
    # The receiver's node answers for the same transfer too.
    seen_by_mother = await client.call(pair.relative_session, "GET", f"/v1/transfers/{accepted['transfer_id']}")
    assert seen_by_mother.json()["state"] == "CREDITED"
    received = (await client.call(pair.relative_session, "GET", "/v1/transfers?role=received")).json()
    assert [t["transfer_id"] for t in received] == [accepted["transfer_id"]]

    after = await money_totals(client, federation)
    assert after["held_fen"] - before["held_fen"] == 1_000_000  # only the giver's opening balance is new
    assert after["in_flight_fen"] == 0 and after["clearing_fen"] == before["clearing_fen"]


async def test_same_province_transfer(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640300", "640500", relation="child")
    accepted = await send(client, pair, 12_345)
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED"
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 12_345
    notices = (await client.call(pair.relative_session, "GET", "/v1/notifications")).json()
    assert notices[-1]["text"] == "您的共济账户已收到123.45元"


async def test_destination_without_wallet_refunds_the_giver(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "610100", relation="sibling", open_wallet=False)
    start_fen = (await me(client, pair.giver_session))["personal_account_fen"]
    accepted = await send(client, pair, 30_000)
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "REFUNDED" and done["reason"] == "WALLET_NOT_OPEN"
    assert (await me(client, pair.giver_session))["personal_account_fen"] == start_fen
    assert (await me(client, pair.relative_session))["wallet"] is None
    giver_notices = [n["text"] for n in (await client.call(pair.giver_session, "GET", "/v1/notifications")).json()]
    assert any("已退回" in text for text in giver_notices)


async def test_idempotency_key_replays_and_refuses_reuse(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    key = uuid.uuid4().hex
    body = {"binding_id": pair.binding_id, "amount_fen": 10_000}
    first = await client.call(pair.giver_session, "POST", "/v1/transfers", body, idempotency_key=key)
    again = await client.call(pair.giver_session, "POST", "/v1/transfers", body, idempotency_key=key)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    other = await client.call(pair.giver_session, "POST", "/v1/transfers", body | {"amount_fen": 10_001},
                              idempotency_key=key)
    assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    await wait_transfer(client, pair.giver_session, first.json()["transfer_id"])
    sent = (await client.call(pair.giver_session, "GET", "/v1/transfers?role=sent")).json()
    assert len(sent) == 1  # the replay moved no money


async def test_transfer_trace_shows_every_hop(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    accepted = await send(client, pair, 100)
    await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    response = await client.http.get(f"{client.hub_url()}/v1/ops/transfers/{accepted['transfer_id']}/trace",
                                     headers={"authorization": f"Bearer {federation.operator_token}"})
    assert response.status_code == 200
    hops = [(h["hop"], h["service"]) for h in response.json()["hops"]]
    assert hops[0] == ("ACCEPTED", "node-640000")
    assert ("DESTINATION_CREDITED", "node-620000") in hops and hops[-1] == ("DECIDED_CREDITED", "hub")
