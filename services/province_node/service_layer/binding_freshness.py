"""Confirm-then-send (issue 13, API.md "Citizen API"): once `:confirm` answered ACTIVE, the giver's transfers and
quota on that binding are accepted at once; once a binding is ended (at either node), no transfer is accepted.

The giver's replica of a binding follows the hub's `wallet.binding.changed.v1` events, which arrive a few
milliseconds to seconds after the hub answered. Two things close that gap:
- the hub tells the giver's node of a confirm or an end made through the relative's node before it answers it
  (national_hub/service_layer/binding_push.py -> `POST /internal/v1/bindings:apply` here);
- when the replica still says anything but ACTIVE, the giver's node asks the hub for the binding's snapshot
  (`POST /internal/v1/bindings:snapshot`) in run_idempotent's `prepare` step, outside the unit of work and its
  locks, and the use case applies it (when newer: the same code and notices as the event) before it reads the
  binding, in the transaction of its decision. This covers a confirm whose push did not get through. The step
  is lazy: the use case's own read of the binding (bindings.binding_for_giver) asks for it (PrepareFirst), so
  a transfer on an ACTIVE replica reads its binding once (a separate read before it was a tenth of the giver
  node's CPU per transfer on PostgreSQL, issue 9).

Measured with `yibao bench transfers --rate 200 --duration 20` (2 busy cores, SQLite): asking the hub on every
transfer cut the node's accept rate from 199.6/s to 125.8/s (accept p50 37 ms -> 7.6 s); with the push plus an
ask only for a replica not ACTIVE (one local read on the accept path) it was 199.8/s, accept p50 15.6 ms.
If the giver's node cannot be reached when the hub pushes an end, it accepts transfers on its replica until the
event arrives, and the hub refunds them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from services.province_node.adapters import binding_repo
from services.province_node.domain.binding_replica import BindingState
from services.province_node.service_layer.bindings import HUB_NOT_ASKED, apply_snapshot
from services.province_node.service_layer.context import NodeContext
from shared.contracts.events import BindingSnapshot
from shared.db import ReadView, UnitOfWork
from shared.prepare import NOT_PREPARED

MAX_BINDING_ID_CHARS = 64
R = TypeVar("R")


async def hub_view(ctx: NodeContext, giver_psn_no: str, binding_id: Any) -> BindingSnapshot | None:
    """Prepare step: when the replica says anything but ACTIVE for this giver's binding, the hub's snapshot (a
    confirm the event has not brought yet); else None, and the replica decides. None too for a binding not of
    this giver, a malformed id (the use case refuses it), or an unreachable hub."""
    if not isinstance(binding_id, str) or not 0 < len(binding_id) <= MAX_BINDING_ID_CHARS:
        return None
    async with ReadView(ctx.db) as view:
        replica = await binding_repo.binding(view, binding_id)
    if replica is not None and (replica.state == BindingState.ACTIVE or replica.giver_psn_no != giver_psn_no):
        return None  # the hub tells this node of an end before it answers it (binding_push.py)
    snapshot = await ctx.hub.binding_if_reachable(binding_id)
    if snapshot is None or snapshot.giver_psn_no != giver_psn_no or snapshot.giver_admdvs != ctx.admdvs:
        return None  # not this giver's: the use case answers from the replica (BINDING_NOT_FOUND, ...)
    return snapshot


def fresh(ctx: NodeContext, use_case: Callable[[UnitOfWork], Awaitable[R]]
          ) -> Callable[[UnitOfWork, BindingSnapshot | None], Awaitable[R]]:
    """Wrap a use case that reads the binding replica (through bindings.binding_for_giver), for
    `run_idempotent(..., prepare=hub_view, lazy_prepare=True)`: before the hub was asked, a replica that does
    not say ACTIVE asks for it; after, the hub's snapshot is applied first, in the use case's transaction."""

    async def run(uow: UnitOfWork, snapshot: BindingSnapshot | None) -> R:
        if snapshot is NOT_PREPARED:
            uow.state[HUB_NOT_ASKED] = True
        elif snapshot is not None:
            await apply_snapshot(ctx, uow, snapshot)
        return await use_case(uow)

    return run
