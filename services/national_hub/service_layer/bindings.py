"""The binding registry: kinship-verified creation, consent by the relative, ending by either party (the
states and who may move them: domain/binding_lifecycle.py). Every change is published to both parties' province
nodes (through the outbox) as a full snapshot with a version."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters import binding_repo
from services.national_hub.adapters.binding_repo import BINDINGS as BINDINGS  # read by the snapshot endpoint
from services.national_hub.adapters.binding_repo import BindingRow
from services.national_hub.domain import binding_lifecycle
from services.national_hub.domain.binding_lifecycle import BindingState, Change
from services.national_hub.domain.kinship import facts_proving
from services.national_hub.service_layer import risk, transfers
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.directory import DIRECTORY, KINSHIP
from shared import audit
from shared.contracts import topics
from shared.contracts.events import BindingChanged, BindingSnapshot
from shared.contracts.internal_api import BindingActionRequest, BindingCreateRequest
from shared.db import ReadView, UnitOfWork
from shared.errors import ApiError
from shared.outbox import emit


def snapshot_of(row: BindingRow | Any) -> BindingSnapshot:
    """The wire snapshot of a registry row (a BindingRow, or a row the snapshot endpoint read)."""
    values = row._asdict()
    return BindingSnapshot.model_validate(values | {"state": str(values["state"])})


async def publish(ctx: HubContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    for admdvs in dict.fromkeys((snapshot.giver_admdvs, snapshot.relative_admdvs)):
        await emit(uow, topics.province_inbound(admdvs), snapshot.binding_id, BindingChanged(binding=snapshot),
                   source=ctx.source, trace_id=snapshot.binding_id)


async def _binding(uow: UnitOfWork, binding_id: str) -> BindingRow:
    # Locked: a confirm and an end (perhaps on two replicas) change one binding one after the other, so each
    # version number is given once.
    row = await binding_repo.locked(uow, binding_id)
    if row is None:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding")
    return row


def _answer(row: BindingRow) -> dict[str, Any]:
    return {"binding": snapshot_of(row).model_dump(mode="json")}


async def current(view: ReadView, binding_id: str) -> dict[str, Any]:
    """The registry's current view of one binding (the giver's node asks before a transfer or a quota)."""
    row = await binding_repo.by_id(view, binding_id)
    if row is None:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding")
    return _answer(row)


async def create(ctx: HubContext, uow: UnitOfWork, request: BindingCreateRequest) -> dict[str, Any]:
    replay = await binding_repo.by_request_key(uow, request.request_key)
    if replay is not None:
        return _answer(replay)
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
    live = await binding_repo.open_between(uow, request.giver_psn_no, relative.psn_no)
    if live is not None:
        raise ApiError(409, "BINDING_EXISTS", f"binding {live} with this relative is already open")
    now = ctx.clock.now()
    binding_id = "B" + uuid.uuid4().hex
    await binding_repo.add(uow, BindingRow(
        binding_id=binding_id, request_key=request.request_key, giver_psn_no=request.giver_psn_no,
        giver_admdvs=request.giver_admdvs, relative_psn_no=relative.psn_no, relative_admdvs=relative.insuplc_admdvs,
        relative_name_masked=request.relative_name_masked, relation=request.relation,
        state=BindingState.PENDING_CONSENT, version=binding_lifecycle.FIRST_VERSION, created_at=now, updated_at=now,
        ended_reason=None))
    snapshot = snapshot_of(await _binding(uow, binding_id))
    await publish(ctx, uow, snapshot)
    return {"binding": snapshot.model_dump(mode="json")}


async def _change(ctx: HubContext, uow: UnitOfWork, row: BindingRow, change: Change) -> dict[str, Any]:
    await binding_repo.apply(uow, row.binding_id, change, ctx.clock.now())
    if change.refunds_in_flight:
        # Ending refunds what is still in flight on the binding, whoever or whatever ended it.
        await transfers.cancel_in_flight_of_binding(ctx, uow, row.binding_id)
    changed = await _binding(uow, row.binding_id)
    if change.judged_for_fake_kinship:
        await risk.on_binding_active(ctx, uow, changed)  # issue 12: fake kinship (many givers, one relative)
    await audit.append(uow, "binding.state", row.binding_id, {"state": change.state.value,
                                                               "reason": change.ended_reason,
                                                               "version": change.version})
    snapshot = snapshot_of(changed)
    await publish(ctx, uow, snapshot)
    return {"binding": snapshot.model_dump(mode="json")}


async def confirm(ctx: HubContext, uow: UnitOfWork, binding_id: str, request: BindingActionRequest) -> dict[str, Any]:
    row = await _binding(uow, binding_id)
    change = binding_lifecycle.confirm(row.state, row.version, relative_psn_no=row.relative_psn_no,
                                       psn_no=request.psn_no)
    if change is None:
        return _answer(row)  # confirming twice is harmless
    return await _change(ctx, uow, row, change)


async def end_all_of_person(ctx: HubContext, uow: UnitOfWork, psn_no: str, reason: str) -> int:
    """A party's insurance ended or moved region: every binding not yet ended where they are giver or relative
    ends, each published to both parties' nodes like any other change."""
    rows = await binding_repo.open_of_person_for_update(uow, psn_no)
    for row in rows:
        change = binding_lifecycle.end_for(row.state, row.version, reason)
        assert change is not None, "an open binding can end"
        await _change(ctx, uow, row, change)
    return len(rows)


async def end(ctx: HubContext, uow: UnitOfWork, binding_id: str, request: BindingActionRequest) -> dict[str, Any]:
    row = await _binding(uow, binding_id)
    change = binding_lifecycle.end(row.state, row.version, parties=(row.giver_psn_no, row.relative_psn_no),
                                   psn_no=request.psn_no, reason=request.reason)
    if change is None:
        return _answer(row)
    return await _change(ctx, uow, row, change)
