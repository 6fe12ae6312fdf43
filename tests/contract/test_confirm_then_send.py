"""Confirm-then-send (issue 13 point 3), deterministic and in process: the BindingChanged event that tells the
giver's node of a confirm or an end is held back (not pumped), and the giver's transfer and quota calls decide on
the hub's snapshot (binding_freshness.py) as the real routes do: accepted right after the confirm, refused right
after an end made at the relative's node, and nothing changed by the refusal."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from services.province_node.service_layer import binding_freshness, quotas
from services.province_node.service_layer import transfers as node_transfers
from services.province_node.service_layer.bindings import BINDINGS
from shared.db import ReadView, UnitOfWork
from shared.web import ApiError
from tests.contract.conftest import (
    InProcessFederation,
    Person,
    active_binding,
    confirm_binding,
    create_binding,
    end_binding,
    family,
    open_wallet,
)


async def replica_state(fed: InProcessFederation, person: Person, binding_id: str) -> Any:
    async with ReadView(fed.node(person.admdvs).db) as view:
        return (await view.execute(sa.select(BINDINGS.c.state, BINDINGS.c.version).where(
            BINDINGS.c.binding_id == binding_id))).one()


async def as_the_route_does(fed: InProcessFederation, giver: Person, binding_id: str,
                            use_case: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]) -> tuple[int, Any]:
    """run_idempotent's order: prepare (ask the hub) outside the unit of work, then the use case in it; a
    refusal leaves without commit."""
    ctx = fed.node(giver.admdvs)
    snapshot = await binding_freshness.hub_view(ctx, giver.psn_no, binding_id)
    async with UnitOfWork(ctx.db) as uow:
        answer = await binding_freshness.fresh(ctx, use_case)(uow, snapshot)
        await uow.commit()
    return answer


def transfer(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int
             ) -> Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]:
    ctx = fed.node(giver.admdvs)
    return lambda uow: node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id, amount_fen)


def quota(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int
          ) -> Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]:
    ctx = fed.node(giver.admdvs)
    return lambda uow: quotas.set_quota(ctx, uow, giver.claims(fed.clock.now()), binding_id, amount_fen)


async def test_a_transfer_right_after_the_confirm_is_accepted(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await create_binding(fed, giver, mother, "parent")
    await fed.pump()
    await confirm_binding(fed, mother, binding_id)  # ACTIVE at the hub; the event to the giver's node waits
    assert (await replica_state(fed, giver, binding_id)).state == "PENDING_CONSENT"
    ctx = fed.node(giver.admdvs)
    with pytest.raises(ApiError) as refused:  # what the replica alone would answer
        async with UnitOfWork(ctx.db) as uow:
            await transfer(fed, giver, binding_id, 500)(uow)
    assert refused.value.code == "BINDING_NOT_ACTIVE"

    status, body = await as_the_route_does(fed, giver, binding_id, transfer(fed, giver, binding_id, 500))
    assert (status, body["state"]) == (202, "ACCEPTED")
    status, body = await as_the_route_does(fed, giver, binding_id, quota(fed, giver, binding_id, 1000))
    assert status == 200 and body["annual_quota_fen"] == 1000
    assert (await replica_state(fed, giver, binding_id)).state == "ACTIVE"
    await fed.pump()  # the late event finds nothing newer; the transfer is credited
    assert (await replica_state(fed, giver, binding_id)).state == "ACTIVE"


async def test_a_transfer_right_after_an_end_at_the_other_node_is_refused(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    await end_binding(fed, mother, binding_id)  # ended at the relative's node; the giver's node not told yet
    before = await replica_state(fed, giver, binding_id)
    assert before.state == "ACTIVE"
    for use_case in (transfer(fed, giver, binding_id, 500), quota(fed, giver, binding_id, 1000)):
        with pytest.raises(ApiError) as refused:
            await as_the_route_does(fed, giver, binding_id, use_case)
        assert refused.value.code == "BINDING_NOT_ACTIVE"
    assert await replica_state(fed, giver, binding_id) == before  # the refusal changed nothing


async def test_another_givers_binding_is_not_taken_from_the_hub(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    ctx = fed.node(giver.admdvs)
    assert await binding_freshness.hub_view(ctx, mother.psn_no, binding_id) is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, "Bnosuch") is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, 42) is None
    assert await binding_freshness.hub_view(ctx, giver.psn_no, binding_id) is not None
