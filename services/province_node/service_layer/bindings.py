"""Bindings as seen from a province node. The hub's registry decides (kinship check, state changes); the node
asks it over internal HTTP and keeps a replica, refreshed by `wallet.binding.changed.v1` events, that the
transfer path reads locally (domain/binding_replica.py: which snapshot wins, who may use a binding)."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from services.province_node.adapters import binding_repo
from services.province_node.adapters.binding_repo import BINDINGS as BINDINGS  # read by other use cases
from services.province_node.adapters.binding_repo import BindingRow
from services.province_node.adapters.tables import Notification
from services.province_node.domain import binding_replica, notices
from services.province_node.domain.binding_replica import BindingState
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import person_by_psn_no
from shared.contracts.events import BindingSnapshot
from shared.contracts.internal_api import BindingActionRequest, BindingCreateRequest
from shared.db import ReadView, UnitOfWork
from shared.ids import InvalidIdNo, id_hash, mask_name, name_hash
from shared.prepare import PrepareFirst
from shared.tables import table
from shared.tokens import Claims

log = logging.getLogger("yibao.node.notices")
NOTIFICATIONS = table(Notification)

# An ID number's shape as OpenAPI documents it (surrounding blanks are forgiven, as shared/ids.py does); the
# GB 11643 check digit is checked by the use cases. Failing either is 422 INVALID_ID_NO.
ID_NO_PATTERN = r"^\s*\d{17}[\dXx]\s*$"

Relation = Literal["spouse", "parent", "child", "sibling", "grandparent", "grandchild"]


@dataclass(frozen=True)
class BindingRequest:
    """`POST /v1/bindings` (entrypoints/citizen_api.BindingCreate): whom the giver binds, and how related."""
    relative_id_no: str
    relative_name: str
    relation: Relation


def view_of(row: BindingRow | BindingSnapshot) -> dict[str, Any]:
    return {
        "binding_id": row.binding_id,
        "state": str(row.state),
        "giver_psn_no": row.giver_psn_no,
        "giver_admdvs": row.giver_admdvs,
        "relative_psn_no": row.relative_psn_no,
        "relative_admdvs": row.relative_admdvs,
        "relative_name_masked": row.relative_name_masked,
        "relation": row.relation,
        "created_at": row.created_at,
        "ended_reason": row.ended_reason,
    }


async def apply_snapshot(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> bool:
    """Keep the replica at the highest version; True when this snapshot changed it."""
    current_version = await binding_repo.version_of(uow, snapshot.binding_id)
    if not binding_replica.is_newer(current_version, snapshot.version):
        return False
    values = snapshot.model_dump()
    if current_version is None:
        await binding_repo.add(uow, values)
    else:
        await binding_repo.replace(uow, snapshot.binding_id, values)
    if snapshot.giver_admdvs == ctx.admdvs:
        await notify(uow, ctx, snapshot.giver_psn_no,
                     notices.binding_changed(snapshot.relative_name_masked, snapshot.state, snapshot.ended_reason))
    relative_text = notices.binding_changed_for_relative(snapshot.state, snapshot.ended_reason)
    if snapshot.relative_admdvs == ctx.admdvs and binding_replica.asks_relative_to_confirm(snapshot.state):
        # Issue 13: the request notice carries the relative's SMS confirmation code (sms_confirmation.py).
        from services.province_node.service_layer import sms_confirmation  # a cycle: it applies snapshots
        code = await sms_confirmation.issue_code(ctx, uow, snapshot)
        relative_text = notices.binding_request_with_sms_code(code)
    if snapshot.relative_admdvs == ctx.admdvs and relative_text is not None:
        await notify(uow, ctx, snapshot.relative_psn_no, relative_text)
    return True


async def notify(uow: UnitOfWork, ctx: NodeContext, psn_no: str, text: str) -> None:
    """Send a notice through the SMS port. A failing notice never loses or delays money: it runs in its own
    savepoint (unless the port only records it at commit, which cannot fail halfway), and its failure is logged
    while the money movement around it commits."""
    try:
        async with contextlib.nullcontext() if ctx.sms.records_at_commit else uow.savepoint():
            await ctx.sms.send(uow, psn_no, text, ctx.clock.now())
    except Exception:
        log.exception("a notice to %s could not be sent; the change it reports stands", psn_no)


# Creating, confirming and ending a binding are decided by the hub over HTTP. Each use case is split in two:
# the call to the hub runs as run_idempotent's `prepare`, outside the node's write lock (a slow hub must never
# stall this node's transfers), and the replica is updated in the unit of work afterwards. The hub's side is
# idempotent (request_key for creation; confirming or ending twice answers the same), so a retry after a
# failure between the two halves converges.


async def request_binding(ctx: NodeContext, claims: Claims, body: BindingRequest,
                          request_key: str | None) -> BindingSnapshot:
    """Prepare of `POST /v1/bindings`: the giver's checks, then the hub verifies the kinship and opens it."""
    async with ReadView(ctx.db) as view:
        giver = await person_by_psn_no(view, claims.psn_no)
    if giver.insutype != "310" or not giver.insured:
        raise DomainError("GIVER_NOT_EMPLOYEE", "only employee-insured persons can give")
    key = ctx.settings.id_hash_key_bytes
    try:
        relative_hash = id_hash(key, body.relative_id_no)
    except InvalidIdNo as exc:
        raise DomainError("INVALID_ID_NO", "relative_id_no fails the GB 11643 check") from exc
    if relative_hash == giver.id_hash:
        raise DomainError("KINSHIP_NOT_VERIFIED", "a person cannot bind themself")
    return await ctx.hub.create_binding(BindingCreateRequest(
        giver_psn_no=giver.psn_no, giver_admdvs=ctx.admdvs, giver_id_hash=giver.id_hash,
        relative_id_hash=relative_hash, relative_name_hash=name_hash(key, body.relative_name),
        relative_name_masked=mask_name(body.relative_name.strip()), relation=body.relation,
        request_key=request_key or uuid.uuid4().hex,
    ))


async def record_created(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> dict[str, Any]:
    await apply_snapshot(ctx, uow, snapshot)
    return {
        "binding_id": snapshot.binding_id,
        "state": snapshot.state,
        "giver_psn_no": snapshot.giver_psn_no,
        "relative_name_masked": snapshot.relative_name_masked,
        "relation": snapshot.relation,
    }


async def confirm_at_hub(ctx: NodeContext, claims: Claims, binding_id: str) -> BindingSnapshot:
    """Prepare of `:confirm` (the relative, face step-up)."""
    if not claims.has_face_step_up(ctx.clock.now().timestamp()):
        raise Forbidden("STEP_UP_REQUIRED", "confirming a binding needs a face verification in the last 5 minutes")
    return await ctx.hub.binding_action(binding_id, "confirm", BindingActionRequest(psn_no=claims.psn_no))


async def end_at_hub(ctx: NodeContext, claims: Claims, binding_id: str) -> BindingSnapshot:
    """Prepare of `DELETE /v1/bindings/{id}` (either party)."""
    return await ctx.hub.binding_action(binding_id, "end",
                                        BindingActionRequest(psn_no=claims.psn_no, reason="UNBOUND"))


async def record_change(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> dict[str, Any]:
    await apply_snapshot(ctx, uow, snapshot)
    return view_of(snapshot)


async def list_bindings(view: ReadView, psn_no: str) -> list[dict[str, Any]]:
    """At the relative's node each confirmed binding also says how it was confirmed (issue 13): `face`, `sms`
    or `counter` (with the clerk's id)."""
    listed = []
    for found in await binding_repo.of_person(view, psn_no):
        item = view_of(found.binding)
        if found.confirmed_via is not None:
            item["confirmed_via"] = found.confirmed_via
            if found.clerk_id is not None:
                item["confirmed_by_clerk_id"] = found.clerk_id
        listed.append(item)
    return listed


# Set in a unit of work whose use case runs before the hub was asked about the binding (binding_freshness.py).
HUB_NOT_ASKED = "bindings.hub_not_asked"


async def binding_for_giver(view: UnitOfWork | ReadView, binding_id: str, giver_psn_no: str) -> BindingRow:
    return giver_binding(view, await binding_repo.binding(view, binding_id), giver_psn_no)


def giver_binding(view: UnitOfWork | ReadView, row: BindingRow | None, giver_psn_no: str) -> BindingRow:
    """`row`, read from the replica, if it is a binding of this giver (see `binding_for_giver`)."""
    if isinstance(view, UnitOfWork) and view.state.get(HUB_NOT_ASKED) and (
            row is None or (row.state != BindingState.ACTIVE and row.giver_psn_no == giver_psn_no)):
        raise PrepareFirst()  # the replica may lag a confirm: ask the hub (binding_freshness.hub_view), then again
    if row is None:
        raise NotFound("BINDING_NOT_FOUND", "no such binding for this person")
    binding_replica.check_giver(giver_psn_no=row.giver_psn_no, relative_psn_no=row.relative_psn_no,
                                psn_no=giver_psn_no)
    return row


async def list_notifications(view: ReadView, psn_no: str) -> list[dict[str, Any]]:
    rows = await view.execute(sa.select(NOTIFICATIONS).where(NOTIFICATIONS.c.psn_no == psn_no)
                              .order_by(NOTIFICATIONS.c.id))
    return [{"id": row.id, "time": row.time, "text": row.text} for row in rows]
