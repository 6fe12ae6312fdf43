"""The binding registry: kinship-verified creation, consent by the relative, ending by either party. Every
change is published to both parties' province nodes (through the outbox) as a full snapshot with a version."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.tables import Binding
from services.national_hub.domain.kinship import facts_proving
from services.national_hub.service_layer import risk, transfers
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.directory import DIRECTORY, KINSHIP
from shared import audit
from shared.contracts import topics
from shared.contracts.events import BindingChanged, BindingSnapshot
from shared.contracts.internal_api import BindingActionRequest, BindingCreateRequest
from shared.db import UnitOfWork, for_update
from shared.errors import ApiError
from shared.outbox import emit
from shared.tables import table

BINDINGS = table(Binding)


def snapshot_of(row: Any) -> BindingSnapshot:
    return BindingSnapshot.model_validate(dict(row._mapping), from_attributes=False)


async def publish(ctx: HubContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    for admdvs in dict.fromkeys((snapshot.giver_admdvs, snapshot.relative_admdvs)):
        await emit(uow, topics.province_inbound(admdvs), snapshot.binding_id, BindingChanged(binding=snapshot),
                   source=ctx.source, trace_id=snapshot.binding_id)


async def _binding(uow: UnitOfWork, binding_id: str) -> Any:
    # Locked: a confirm and an end (perhaps on two replicas) change one binding one after the other, so each
    # version number is given once.
    row = (await uow.execute(for_update(sa.select(BINDINGS).where(BINDINGS.c.binding_id == binding_id)))).first()
    if row is None:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding")
    return row


async def create(ctx: HubContext, uow: UnitOfWork, request: BindingCreateRequest) -> dict[str, Any]:
    replay = (await uow.execute(sa.select(BINDINGS).where(BINDINGS.c.request_key == request.request_key))).first()
    if replay is not None:
        return {"binding": snapshot_of(replay).model_dump(mode="json")}
    relative = (await uow.execute(sa.select(DIRECTORY).where(DIRECTORY.c.id_hash == request.relative_id_hash))).first()
    if relative is None or relative.name_hash != request.relative_name_hash:
        raise ApiError(422, "KINSHIP_NOT_VERIFIED", "name and ID number do not match an insured person")
    if not relative.insured:
        raise ApiError(422, "RELATIVE_NOT_INSURED", "the relative's insurance has ended")
    facts = facts_proving(request.giver_id_hash, request.relative_id_hash, request.relation)
    proven = (await uow.execute(sa.select(KINSHIP.c.relation).where(sa.or_(*[
        sa.and_(KINSHIP.c.id_hash_a == a, KINSHIP.c.id_hash_b == b, KINSHIP.c.relation == r) for a, b, r in facts
    ])))).first()
    if proven is None:
        raise ApiError(422, "KINSHIP_NOT_VERIFIED", "the kinship registry does not show this relation")
    # One open binding per pair: two creates for one pair (two replicas, two request keys) take turns here.
    await uow.lock_name(f"binding-pair|{request.giver_psn_no}|{relative.psn_no}")
    live = (await uow.execute(sa.select(BINDINGS.c.binding_id).where(
        BINDINGS.c.giver_psn_no == request.giver_psn_no, BINDINGS.c.relative_psn_no == relative.psn_no,
        BINDINGS.c.state != "ENDED"))).first()
    if live is not None:
        raise ApiError(409, "BINDING_EXISTS", f"binding {live.binding_id} with this relative is already open")
    now = ctx.clock.now()
    binding_id = "B" + uuid.uuid4().hex
    await uow.execute(sa.insert(BINDINGS).values(
        binding_id=binding_id, request_key=request.request_key, giver_psn_no=request.giver_psn_no,
        giver_admdvs=request.giver_admdvs, relative_psn_no=relative.psn_no, relative_admdvs=relative.insuplc_admdvs,
        relative_name_masked=request.relative_name_masked, relation=request.relation, state="PENDING_CONSENT",
        version=1, created_at=now, updated_at=now))
    snapshot = snapshot_of(await _binding(uow, binding_id))
    await publish(ctx, uow, snapshot)
    return {"binding": snapshot.model_dump(mode="json")}


async def _change(ctx: HubContext, uow: UnitOfWork, row: Any, state: str, reason: str | None) -> dict[str, Any]:
    await uow.execute(sa.update(BINDINGS).where(BINDINGS.c.binding_id == row.binding_id).values(
        state=state, version=row.version + 1, updated_at=ctx.clock.now(), ended_reason=reason))
    if state == "ENDED":
        # Ending refunds what is still in flight on the binding, whoever or whatever ended it.
        await transfers.cancel_in_flight_of_binding(ctx, uow, row.binding_id)
    changed = await _binding(uow, row.binding_id)
    if state == "ACTIVE":
        await risk.on_binding_active(ctx, uow, changed)  # issue 12: fake kinship (many givers, one relative)
    await audit.append(uow, "binding.state", row.binding_id, {"state": state, "reason": reason,
                                                               "version": row.version + 1})
    snapshot = snapshot_of(changed)
    await publish(ctx, uow, snapshot)
    return {"binding": snapshot.model_dump(mode="json")}


async def confirm(ctx: HubContext, uow: UnitOfWork, binding_id: str, request: BindingActionRequest) -> dict[str, Any]:
    row = await _binding(uow, binding_id)
    if row.relative_psn_no != request.psn_no:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding awaiting this person's consent")
    if row.state == "ACTIVE":
        return {"binding": snapshot_of(row).model_dump(mode="json")}  # confirming twice is harmless
    if row.state != "PENDING_CONSENT":
        raise ApiError(422, "BINDING_NOT_PENDING", f"the binding is {row.state}")
    return await _change(ctx, uow, row, "ACTIVE", None)


async def end_all_of_person(ctx: HubContext, uow: UnitOfWork, psn_no: str, reason: str) -> int:
    """A party's insurance ended or moved region: every binding not yet ended where they are giver or relative
    ends, each published to both parties' nodes like any other change."""
    rows = (await uow.execute(for_update(sa.select(BINDINGS).where(
        sa.or_(BINDINGS.c.giver_psn_no == psn_no, BINDINGS.c.relative_psn_no == psn_no),
        BINDINGS.c.state != "ENDED").order_by(BINDINGS.c.created_at)))).all()
    for row in rows:
        await _change(ctx, uow, row, "ENDED", reason)
    return len(rows)


async def end(ctx: HubContext, uow: UnitOfWork, binding_id: str, request: BindingActionRequest) -> dict[str, Any]:
    row = await _binding(uow, binding_id)
    if request.psn_no not in (row.giver_psn_no, row.relative_psn_no):
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding for this person")
    if row.state == "ENDED":
        return {"binding": snapshot_of(row).model_dump(mode="json")}
    return await _change(ctx, uow, row, "ENDED", request.reason or "UNBOUND")
