"""Confirm-then-send (issue 13, API.md "Citizen API"): once `:confirm` answered ACTIVE, the giver's transfers and
quota on that binding are accepted at once; once a binding is ended (at either node), no transfer is accepted.

The giver's replica of a binding follows the hub's `wallet.binding.changed.v1` events, which arrive a few
milliseconds to seconds after the hub answered. So before deciding a transfer or a quota change, the giver's node
asks the hub for the binding's current snapshot (`GET /internal/v1/bindings/{id}`), in run_idempotent's `prepare`
step: outside the unit of work and its locks, so a slow hub never stalls this node's other writes. The use case
then applies the snapshot to the replica (when newer: the same code and notices as the event, which later finds
nothing newer) before it reads the binding, in the same transaction as the decision.

Why ask on every call rather than only when the replica says anything but ACTIVE: an end made at the relative's
node reaches the giver's node only by the event, and the contract allows no transfer after the end answered. One
internal GET (a primary-key read at the hub, ~1-2 ms locally) per transfer keeps `yibao bench transfers` within
its p99 target (measured, README).

When the hub cannot be reached the node decides on its replica as before (a transfer must not need the hub to be
up): the hub still refuses, at consumption, a transfer on a binding it knows ended, and the giver is refunded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.province_node.service_layer.bindings import apply_snapshot
from services.province_node.service_layer.context import NodeContext
from shared.contracts.events import BindingSnapshot
from shared.db import UnitOfWork

MAX_BINDING_ID_CHARS = 64


async def hub_view(ctx: NodeContext, giver_psn_no: str, binding_id: Any) -> BindingSnapshot | None:
    """Prepare step: the hub's snapshot of a binding of this giver, or None (no such binding of theirs, a
    malformed id the use case refuses itself, or the hub unreachable: the replica decides)."""
    if not isinstance(binding_id, str) or not 0 < len(binding_id) <= MAX_BINDING_ID_CHARS:
        return None
    snapshot = await ctx.hub.binding_if_reachable(binding_id)
    if snapshot is None or snapshot.giver_psn_no != giver_psn_no or snapshot.giver_admdvs != ctx.admdvs:
        return None  # not this giver's: the use case answers from the replica (BINDING_NOT_FOUND, ...)
    return snapshot


def fresh(ctx: NodeContext, use_case: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]
          ) -> Callable[[UnitOfWork, BindingSnapshot | None], Awaitable[tuple[int, Any]]]:
    """Wrap a use case that reads the binding replica: apply the hub's snapshot first, in its transaction."""

    async def run(uow: UnitOfWork, snapshot: BindingSnapshot | None) -> tuple[int, Any]:
        if snapshot is not None:
            await apply_snapshot(ctx, uow, snapshot)
        return await use_case(uow)

    return run
