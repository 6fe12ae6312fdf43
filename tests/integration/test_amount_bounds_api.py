"""Amounts above MAX_AMOUNT_FEN (10^12 fen) on the citizen and admin APIs of a node: 422 INVALID_AMOUNT, never a
500, and nothing changes. Through the node's real FastAPI app in process (routes, error handlers, idempotency),
on the in-process federation of conftest.py; the bound itself is taken, and moves sums past 2^31 fen."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.province_node.bootstrap import bootstrap as node_bootstrap
from shared.money import MAX_AMOUNT_FEN
from shared.tokens import issue
from tests.support.inprocess import SOURCE, InProcessFederation
from tests.support.stories import Person, active_binding, balance_fen, family, open_wallet

OVER = MAX_AMOUNT_FEN + 1


@pytest.fixture
async def node_http(fed: InProcessFederation) -> AsyncIterator[httpx.AsyncClient]:
    """The source node's real app; its lifespan (Kafka) does not run in process, so its context is given."""
    ctx = fed.node(SOURCE)
    app = node_bootstrap(ctx.settings, fed.clock)
    app.state.ctx = ctx
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://node") as client:
        yield client


def _citizen(fed: InProcessFederation, person: Person) -> dict[str, str]:
    token = issue(fed.node(person.admdvs).settings.token_key.encode(), person.claims(fed.clock.now()))
    return {"authorization": f"Bearer {token}", "idempotency-key": uuid.uuid4().hex}


def _operator(fed: InProcessFederation) -> dict[str, str]:
    return {"authorization": f"Bearer {fed.node(SOURCE).settings.operator_token}",
            "idempotency-key": uuid.uuid4().hex}


def _refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_AMOUNT", error
    assert field in error["message"] and str(MAX_AMOUNT_FEN) in error["message"], error


async def _balances(fed: InProcessFederation, *accounts: str) -> list[int | None]:
    return [await balance_fen(fed, SOURCE, account) for account in accounts]


@pytest.mark.parametrize("amount_fen", [OVER, 10**30])
async def test_citizen_amounts_above_the_bound_are_refused(fed: InProcessFederation, node_http: httpx.AsyncClient,
                                                          amount_fen: int) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    pa = f"PA:{giver.psn_no}"
    before = await _balances(fed, pa, "SYS:FUNDING", "SYS:IN_FLIGHT")

    transfer = await node_http.post("/v1/transfers", headers=_citizen(fed, giver),
                                    json={"binding_id": binding_id, "amount_fen": amount_fen})
    _refused(transfer, "amount_fen")
    quota = await node_http.put(f"/v1/bindings/{binding_id}/quota", headers=_citizen(fed, giver),
                                json={"annual_quota_fen": amount_fen})
    _refused(quota, "annual_quota_fen")
    premium = await node_http.post("/v1/premiums", headers=_citizen(fed, giver), json={
        "beneficiary_id_no": mother.id_no, "year": 2025, "amount_fen": amount_fen, "payer": "quota",
        "binding_id": binding_id})
    _refused(premium, "amount_fen")

    assert await _balances(fed, pa, "SYS:FUNDING", "SYS:IN_FLIGHT") == before
    assert await fed.take_all() == [], "a refused call announced something"
    # The amounts the use cases refuse themselves keep their code (tests/e2e/test_bad_input.py).
    small = await node_http.post("/v1/transfers", headers=_citizen(fed, giver),
                                 json={"binding_id": binding_id, "amount_fen": 0})
    assert (small.status_code, small.json()["error"]["code"]) == (422, "INVALID_AMOUNT")


async def test_admin_import_and_credit_above_the_bound_are_refused(fed: InProcessFederation,
                                                                   node_http: httpx.AsyncClient) -> None:
    giver, _ = await family(fed)
    pa = f"PA:{giver.psn_no}"
    before = await _balances(fed, pa, "SYS:FUNDING")

    credit = await node_http.post("/v1/admin/accounts:credit-monthly", headers=_operator(fed), json={"credits": [
        {"id_no": giver.id_no, "amount_fen": 100}, {"id_no": giver.id_no, "amount_fen": OVER}]})
    _refused(credit, "credits[1].amount_fen")
    huge = await node_http.post("/v1/admin/accounts:credit-monthly", headers=_operator(fed), json={"credits": [
        {"id_no": giver.id_no, "amount_fen": 10**30}]})
    _refused(huge, "credits[0].amount_fen")

    newcomer: dict[str, Any] = {"id_no": "640102199203040019", "name": "新人", "phone": "13800138001",
                                "insutype": "310", "pooling_admdvs": "640100"}
    imported = await node_http.post("/v1/admin/persons:import", headers=_operator(fed), json={"persons": [
        newcomer | {"personal_account_fen": 100}, newcomer | {"personal_account_fen": OVER}]})
    _refused(imported, "persons[1].personal_account_fen")

    assert await _balances(fed, pa, "SYS:FUNDING") == before
    assert await fed.take_all() == []


async def test_the_bound_itself_is_taken_and_moves_sums_past_2_31(fed: InProcessFederation,
                                                                 node_http: httpx.AsyncClient) -> None:
    giver, _ = await family(fed)
    pa = f"PA:{giver.psn_no}"
    [pa_before, funding_before] = await _balances(fed, pa, "SYS:FUNDING")
    assert pa_before is not None and funding_before is not None
    credit = await node_http.post("/v1/admin/accounts:credit-monthly", headers=_operator(fed), json={"credits": [
        {"id_no": giver.id_no, "amount_fen": MAX_AMOUNT_FEN}, {"id_no": giver.id_no, "amount_fen": MAX_AMOUNT_FEN}]})
    assert credit.status_code == 200, credit.text
    assert credit.json() == {"credited": 2, "total_fen": 2 * MAX_AMOUNT_FEN}
    assert await _balances(fed, pa, "SYS:FUNDING") == [pa_before + 2 * MAX_AMOUNT_FEN,
                                                        funding_before - 2 * MAX_AMOUNT_FEN]
