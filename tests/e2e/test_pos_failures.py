"""The payer's province failing on the real federation: a node that does not answer (the till is told the outcome
is unknown, and a reversal makes both sides agree) and a node that is down (its people fail fast, others pay)."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta

import pytest

from launcher import supervisor
from launcher.client import FederationClient
from launcher.pos_client import Item, ok
from tests.conftest import Federation
from tests.e2e.flows import face_login
from tests.e2e.pos import (
    DRUG,
    PROVINCE_TIMEOUT_S,
    Tills,
    balances,
    enrolled,
    frozen,
    new_till,
    settlement_day,
)

pytestmark = pytest.mark.federation


async def test_lost_answer_then_reversal_makes_both_sides_agree(
        federation: Federation, client: FederationClient, admin: FederationClient) -> None:
    """The payer's node is stuck (SIGSTOP): the till gets -1 "outcome unknown" when the gateway's deadline
    passes; the woken node refuses the late settle unapplied; the reversal finds nothing to undo, the person keeps
    their money, and the gateway's 3201 shows nothing, as the node does."""
    till = await new_till(admin, "成都大药房(断线)", "510100")
    try:
        person = await enrolled(client, "610100", pa_fen=10_000)
        session = await face_login(client, person)
        payer = await till.payer("02", person.id_no)
        msgid = till.new_msgid()
        envelope = till.envelope("2102", till.purchase(payer, [Item(DRUG, 1, "20.00")]), msgid=msgid)
        with frozen(federation, "node-610000"):
            # The gateway's own deadline answers the till, not a broken connection nor anything later.
            async with asyncio.timeout(PROVINCE_TIMEOUT_S + 2):
                status, lost = await till.send(envelope)
        assert status == 200 and lost["infcode"] == -1 and "outcome is unknown" in lost["err_msg"], lost
        assert f"no answer within {PROVINCE_TIMEOUT_S:g} s" in lost["err_msg"], lost
        assert await till.send(envelope) == (200, lost)  # a repeat gets the original answer
        # The settle reaches the woken node after the gateway stopped waiting for it (answer_by), so the node
        # refuses it unapplied, before or after the reversal arrives: there is nothing to undo.
        undone = ok(await till.reverse(msgid, "2102", payer.psn_no))
        assert undone["undone"] is False, undone
        assert await balances(client, session) == (10_000, None)
        today = settlement_day()
        stmt = ok(await till.reconcile(today - timedelta(days=1), today + timedelta(days=1)))["stmtinfo"]
        assert (stmt["fixmedins_setl_cnt"], stmt["medfee_sumamt"]) == (0, 0.0)
    finally:
        await till.aclose()


async def test_a_province_that_is_down_fails_fast_for_its_people_only(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    gansu = await enrolled(client, "620100", pa_fen=10_000)
    ningxia = await enrolled(client, "640100", pa_fen=10_000)
    gansu_payer = await tills.chengdu.payer("02", gansu.id_no)
    ningxia_payer = await tills.chengdu.payer("02", ningxia.id_no)
    supervisor.signal_service(federation.home, "node-620000", signal.SIGTERM)
    try:
        async with asyncio.timeout(PROVINCE_TIMEOUT_S):  # fails fast: no waiting for the deadline
            down = await tills.chengdu.settle(gansu_payer, [Item(DRUG, 1, "10.00")])
        assert down["infcode"] == -1 and "620000" in down["err_msg"] and "nothing was charged" in down["err_msg"]
        looked_up = await tills.chengdu.person("02", gansu.id_no)
        assert looked_up["infcode"] == -1 and "unavailable" in looked_up["err_msg"]
        paid = await asyncio.gather(*(tills.chengdu.settle(ningxia_payer, [Item(DRUG, 1, "10.00")])
                                      for _ in range(5)))
        assert [p["infcode"] for p in paid] == [0] * 5
    finally:
        supervisor.restart_service(federation.home, "node-620000")
    assert ok(await tills.chengdu.settle(gansu_payer, [Item(DRUG, 1, "10.00")]))["setlinfo"]["acct_pay"] == 10.0
