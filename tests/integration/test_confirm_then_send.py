"""Confirm-then-send (issue 13 point 3), deterministic and in process, with the BindingChanged event that tells
the giver's node of a confirm or an end held back (not pumped): the hub tells the giver's node itself before it
answers (binding_push.py, through the node's real internal route), and when that did not get through, the giver's
node asks the hub while its replica says anything but ACTIVE (binding_freshness.py). A transfer right after the
confirm is accepted, one right after an end at the relative's node refused, and the refusal changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from services.national_hub.adapters.node_client import NodeClient
from services.province_node.service_layer import binding_freshness, quotas
from services.province_node.service_layer import transfers as node_transfers
from services.province_node.service_layer.bindings import BINDINGS
from shared.db import ReadView, UnitOfWork
from shared.idempotency import IdempotentRequest, run_once
from shared.idempotency_store import IdempotencyStore
from shared.web import ApiError
from tests.integration.test_lifecycle_flows import node_app
from tests.support.inprocess import InProcessFederation
from tests.support.stories import (
    Person,
    active_binding,
    confirm_binding,
    create_binding,
    end_binding,
    family,
    open_wallet,
)


class NodeApps(httpx.AsyncBaseTransport):
    """Answers each request with the real app (internal token, routes, handlers) of the node its host names."""

    def __init__(self, fed: InProcessFederation) -> None:
        self.apps = {f"node-{admdvs}": httpx.ASGITransport(app=node_app(fed, admdvs)) for admdvs in fed.nodes}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.apps[request.url.host].handle_async_request(request)


@pytest.fixture
async def pushing(fed: InProcessFederation) -> AsyncIterator[NodeClient]:
    """The hub's real NodeClient, over the nodes' apps in process."""
    nodes = NodeClient(lambda admdvs: f"http://node-{admdvs}", fed.hub.settings.internal_token,
                       fed.hub.settings.internal_http_timeout_s, transport=NodeApps(fed))
    fed.hub.nodes = nodes
    try:
        yield nodes
    finally:
        fed.hub.nodes = None
        await nodes.close()


async def replica_state(fed: InProcessFederation, person: Person, binding_id: str) -> Any:
    async with ReadView(fed.node(person.admdvs).db) as view:
        return (await view.execute(sa.select(BINDINGS.c.state, BINDINGS.c.version).where(
            BINDINGS.c.binding_id == binding_id))).one()


HUB_ASKED: list[str] = []  # binding ids the giver's node asked the hub about (as_the_route_does)


async def as_the_route_does(fed: InProcessFederation, giver: Person, binding_id: str,
                            use_case: Callable[[UnitOfWork], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The route's way (run_idempotent with a lazy prepare step): the use case in a unit of work; when the
    replica does not say ACTIVE it asks for the hub's view, which is fetched outside the unit of work, and it
    runs again. The use case's result, or its refusal raised (the route answers either with its status)."""
    ctx = fed.node(giver.admdvs)

    async def hub_view() -> Any:
        HUB_ASKED.append(binding_id)
        return await binding_freshness.hub_view(ctx, giver.psn_no, binding_id)

    answer = await run_once(IdempotencyStore(ctx.db), ctx.db, IdempotentRequest("test", None, "-"),
                            binding_freshness.fresh(ctx, use_case), hub_view, status=200, lazy_prepare=True)
    body: dict[str, Any] = orjson.loads(answer.body)
    if answer.status >= 400:
        raise ApiError(answer.status, body["error"]["code"], body["error"]["message"])
    return body


def transfer(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int
             ) -> Callable[[UnitOfWork], Awaitable[dict[str, Any]]]:
    ctx = fed.node(giver.admdvs)
    return lambda uow: node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id, amount_fen)


def quota(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int
          ) -> Callable[[UnitOfWork], Awaitable[dict[str, Any]]]:
    ctx = fed.node(giver.admdvs)
    return lambda uow: quotas.set_quota(ctx, uow, giver.claims(fed.clock.now()), binding_id, amount_fen)


async def test_the_hub_tells_the_giver_of_a_confirm_and_an_end_before_it_answers(
        fed: InProcessFederation, pushing: NodeClient) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await create_binding(fed, giver, mother, "parent")
    await fed.pump()
    await confirm_binding(fed, mother, binding_id)  # at her node; the event to the giver's node is held back
    assert (await replica_state(fed, giver, binding_id)).state == "ACTIVE"
    HUB_ASKED.clear()
    body = await as_the_route_does(fed, giver, binding_id, transfer(fed, giver, binding_id, 500))
    assert body["state"] == "ACCEPTED"
    assert HUB_ASKED == []  # ACTIVE here: the transfer read its binding once, and nobody asked the hub

    await end_binding(fed, mother, binding_id)  # ended at her node; the event still held back
    before = await replica_state(fed, giver, binding_id)
    assert before.state == "ENDED"
    for use_case in (transfer(fed, giver, binding_id, 500), quota(fed, giver, binding_id, 1000)):
        with pytest.raises(ApiError) as refused:
            await as_the_route_does(fed, giver, binding_id, use_case)
        assert refused.value.code == "BINDING_NOT_ACTIVE"
    assert await replica_state(fed, giver, binding_id) == before
    await fed.pump()  # the late events find nothing newer
    assert await replica_state(fed, giver, binding_id) == before


async def test_a_confirm_the_giver_was_not_told_of_is_asked_for(fed: InProcessFederation) -> None:
    """No push got through (the hub's NodeClient is absent here): the giver's node asks the hub."""
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await create_binding(fed, giver, mother, "parent")
    await fed.pump()
    await confirm_binding(fed, mother, binding_id)
    assert (await replica_state(fed, giver, binding_id)).state == "PENDING_CONSENT"
    ctx = fed.node(giver.admdvs)
    with pytest.raises(ApiError) as refused:  # what the replica alone would answer
        async with UnitOfWork(ctx.db) as uow:
            await transfer(fed, giver, binding_id, 500)(uow)
    assert refused.value.code == "BINDING_NOT_ACTIVE"

    HUB_ASKED.clear()
    body = await as_the_route_does(fed, giver, binding_id, transfer(fed, giver, binding_id, 500))
    assert body["state"] == "ACCEPTED"
    assert [binding_id] == HUB_ASKED  # the replica said PENDING_CONSENT: the use case asked, then ran again
    body = await as_the_route_does(fed, giver, binding_id, quota(fed, giver, binding_id, 1000))
    assert body["annual_quota_fen"] == 1000
    assert (await replica_state(fed, giver, binding_id)).state == "ACTIVE"
    await fed.pump()
    assert (await replica_state(fed, giver, binding_id)).state == "ACTIVE"


async def test_an_end_the_giver_was_not_told_of_refunds_the_transfer(fed: InProcessFederation) -> None:
    """The documented gap: the giver's node unreachable when the hub ended the binding accepts on its replica;
    the hub refuses the transfer and the giver is refunded."""
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    await end_binding(fed, mother, binding_id)
    body = await as_the_route_does(fed, giver, binding_id, transfer(fed, giver, binding_id, 500))
    assert body["state"] == "ACCEPTED"
    await fed.pump()
    async with ReadView(fed.node(giver.admdvs).db) as view:
        state = (await node_transfers.get_transfer(view, giver.psn_no, body["transfer_id"]))["state"]
    assert state == "REFUNDED"


async def test_the_hub_is_asked_only_about_the_givers_own_binding_not_active_here(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    ctx = fed.node(giver.admdvs)
    assert await binding_freshness.hub_view(ctx, mother.psn_no, binding_id) is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, "Bnosuch") is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, 42) is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, binding_id) is None  # ACTIVE here: not asked
