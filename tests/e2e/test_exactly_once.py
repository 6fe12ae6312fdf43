"""Exactly once across crashes: whatever process dies, and whenever, every transfer ends credited once or
refunded once, and the money in the federation is unchanged."""

from __future__ import annotations

import signal

import pytest

from launcher import supervisor
from launcher.client import FederationClient
from tests.conftest import TEST_TRANSFER_TIMEOUT_S, Federation
from tests.e2e.flows import bound_pair, eventually, hub_has_hop, me, money_totals, send, wait_transfer

pytestmark = pytest.mark.federation


async def test_destination_down_receives_the_transfer_when_it_comes_back(
        federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    supervisor.signal_service(federation.home, "node-620000", signal.SIGTERM)
    try:
        accepted = await send(client, pair, 20_000)
        await eventually(lambda: hub_has_hop(client, accepted["transfer_id"], "ROUTING"),
                         "the hub routes it towards the stopped node")
        pending = await client.call(pair.giver_session, "GET", f"/v1/transfers/{accepted['transfer_id']}")
        assert pending.json()["state"] == "ACCEPTED"
    finally:
        supervisor.restart_service(federation.home, "node-620000")
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED"
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 20_000


@pytest.mark.parametrize("victim", ["node-640000", "hub", "node-620000"])
async def test_sigkill_between_steps_ends_credited_once(
        federation: Federation, client: FederationClient, victim: str) -> None:
    pair = await bound_pair(client, "640100", "620100")
    before = await money_totals(client, federation)
    giver_start = (await me(client, pair.giver_session))["personal_account_fen"]
    # Three transfers in quick succession, then the kill: they are caught at different steps of the pipeline.
    sent = [await send(client, pair, amount) for amount in (10_000, 20_000, 30_000)]
    supervisor.signal_service(federation.home, victim, signal.SIGKILL)
    supervisor.restart_service(federation.home, victim)
    finals = [await wait_transfer(client, pair.giver_session, t["transfer_id"]) for t in sent]
    assert [f["state"] for f in finals] == ["CREDITED"] * 3
    wallet = (await me(client, pair.relative_session))["wallet"]["balance_fen"]
    assert wallet == 60_000  # each credited exactly once
    assert (await me(client, pair.giver_session))["personal_account_fen"] == giver_start - 60_000
    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"]
    assert after["in_flight_fen"] == 0 and after["clearing_fen"] == before["clearing_fen"]


async def test_timeout_refunds_once_and_destination_never_credits_late(
        federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "610100")
    before = await money_totals(client, federation)
    supervisor.signal_service(federation.home, "node-610000", signal.SIGTERM)
    try:
        accepted = await send(client, pair, 40_000)
        # The hub's timeout passes while the destination is down: it asks for a cancel and waits for the answer.
        await eventually(lambda: hub_has_hop(client, accepted["transfer_id"], "TIMEOUT_CANCEL_REQUESTED"),
                         "the hub's timeout passes", timeout_s=TEST_TRANSFER_TIMEOUT_S + 15)
        still = await client.call(pair.giver_session, "GET", f"/v1/transfers/{accepted['transfer_id']}")
        assert still.json()["state"] == "ACCEPTED"  # never refunded before the destination promised not to credit
    finally:
        supervisor.restart_service(federation.home, "node-610000")
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "REFUNDED" and done["reason"] in ("EXPIRED", "TIMEOUT")
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 0
    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"] and after["in_flight_fen"] == 0
