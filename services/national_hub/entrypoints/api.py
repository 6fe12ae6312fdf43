"""The hub's HTTP surface: identity (public), admin kinship import and operator views (operator token), and
the internal API the province nodes call (internal token)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.national_hub.domain.kinship import RELATIONS
from services.national_hub.entrypoints.deps import CtxDep
from services.national_hub.service_layer import (
    binding_push,
    bindings,
    directory,
    mutual_aid,
    sign_in_throttle,
    transfers,
)
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.directory import ID_NO_SCHEMA, Relationship, SignIn
from shared.contracts.internal_api import (
    BindingActionRequest,
    BindingCreateRequest,
    BindingLookup,
    BindingResponse,
    DirectoryLookup,
    DirectoryLookupResult,
    DirectoryRegistrationBatch,
    PremiumQuotaRequest,
    PremiumReservation,
    PremiumReservationRequest,
)
from shared.db import ReadView, in_unit_of_work
from shared.idempotency import run_idempotent
from shared.openapi import refusal
from shared.web import ApiError, require_internal, require_operator

public = APIRouter(tags=["identity"])
admin = APIRouter(tags=["admin"])
internal = APIRouter(prefix="/internal/v1", tags=["internal"])


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id_no: str = Field(json_schema_extra=ID_NO_SCHEMA)
    name: str
    method: Literal["password", "face"]
    password: str | None = None
    face_image_b64: str | None = None


class KinshipRelation(BaseModel):
    id_no_a: str = Field(json_schema_extra=ID_NO_SCHEMA)
    id_no_b: str = Field(json_schema_extra=ID_NO_SCHEMA)
    relation: str = Field(json_schema_extra={"enum": list(RELATIONS)})


class KinshipImport(BaseModel):
    relations: list[KinshipRelation]


@public.post("/v1/identity/sessions", status_code=201, responses={
    401: refusal("AUTHENTICATION_FAILED"), 422: refusal("INVALID_ID_NO", when="a wrong check digit"),
    429: refusal("TOO_MANY_ATTEMPTS", when="5 failures for this ID number, or 30 from this address, in 15 minutes")})
async def open_session(request: Request, ctx: CtxDep, body: SessionRequest) -> dict[str, Any]:
    """Issue 13: throttled per person and per client address (sign_in_throttle.py). Behind HAProxy the client
    address is the X-Forwarded-For HAProxy sets, trusted from 127.0.0.1 only (shared/runtime.py serve)."""
    subjects = sign_in_throttle.subjects_of(ctx, body.id_no, request.client.host if request.client else None)
    had_failures = await sign_in_throttle.refuse_if_blocked(ctx, subjects)
    try:
        async with ReadView(ctx.db) as view:
            session = await directory.open_session(ctx, view, SignIn(**body.model_dump()))
    except ApiError as refused:
        if refused.code == "AUTHENTICATION_FAILED":
            await sign_in_throttle.record_failure(ctx, subjects)
        raise
    if had_failures:
        await sign_in_throttle.reset_person(ctx, subjects)
    return session


@admin.post("/v1/admin/kinship:import", dependencies=[Depends(require_operator)], responses={422: refusal(
    "INVALID_ID_NO", "INVALID_RELATION", when="a wrong check digit; a person named as their own relative")})
async def import_kinship(request: Request, ctx: CtxDep, body: KinshipImport) -> Response:
    relations = [Relationship(**relation.model_dump()) for relation in body.relations]
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: directory.import_kinship(ctx, uow, relations), status=200)


@admin.get("/v1/ops/transfers/{transfer_id}/trace", dependencies=[Depends(require_operator)])
async def transfer_trace(ctx: CtxDep, transfer_id: str) -> dict[str, Any]:
    async with ReadView(ctx.db) as view:
        return await transfers.trace(view, transfer_id)


@internal.post("/directory/persons", dependencies=[Depends(require_internal)])
async def register_persons(request: Request, ctx: CtxDep, body: DirectoryRegistrationBatch) -> Response:
    return await run_idempotent(request, ctx.db, "internal", lambda uow: directory.register(ctx, uow, body),
                                status=200)


@internal.post("/directory/lookup", dependencies=[Depends(require_internal)])
async def lookup_person(ctx: CtxDep, body: DirectoryLookup) -> DirectoryLookupResult:
    """The gateway: which province insures the holder of this ID or card (keyed hashes only)."""
    async with ReadView(ctx.db) as view:
        return await directory.lookup(view, body)



@internal.post("/bindings", dependencies=[Depends(require_internal)])
async def create_binding(ctx: CtxDep, body: BindingCreateRequest) -> dict[str, Any]:
    return await in_unit_of_work(ctx.db, lambda uow: bindings.create(ctx, uow, body))


@internal.post("/bindings:snapshot", dependencies=[Depends(require_internal)], response_model=BindingResponse)
async def binding_snapshot(ctx: CtxDep, body: BindingLookup) -> dict[str, Any]:
    """Issue 13 (confirm-then-send): the registry's current view of one binding, which the giver's node reads
    before deciding a transfer or a quota, so that a confirm or an end the hub answered is never out-raced by
    the BindingChanged event that reports it."""
    async with ReadView(ctx.db) as view:
        return await bindings.current(view, body.binding_id)


@internal.post("/bindings/{binding_id}:confirm", dependencies=[Depends(require_internal)])
async def confirm_binding(ctx: CtxDep, binding_id: str, body: BindingActionRequest) -> dict[str, Any]:
    answer = await in_unit_of_work(ctx.db, lambda uow: bindings.confirm(ctx, uow, binding_id, body))
    await binding_push.tell_the_giver(ctx, body.psn_no, answer)  # issue 13: confirm-then-send
    return answer


@internal.post("/bindings/{binding_id}:end", dependencies=[Depends(require_internal)])
async def end_binding(ctx: CtxDep, binding_id: str, body: BindingActionRequest) -> dict[str, Any]:
    answer = await in_unit_of_work(ctx.db, lambda uow: bindings.end(ctx, uow, binding_id, body))
    await binding_push.tell_the_giver(ctx, body.psn_no, answer)  # issue 13: no transfer after the end
    return answer


async def _forward_premium(ctx: HubContext, action: str, body: PremiumReservationRequest) -> dict[str, Any]:
    assert ctx.nodes is not None, "the hub's bootstrap wires the node client"
    return await mutual_aid.forward_premium(ctx, ctx.nodes, action, body)


@internal.post("/premiums:reserve", dependencies=[Depends(require_internal)], response_model=PremiumReservation)
async def reserve_premium(ctx: CtxDep, body: PremiumReservationRequest) -> dict[str, Any]:
    return await _forward_premium(ctx, "reserve", body)


@internal.post("/premiums:release", dependencies=[Depends(require_internal)])
async def release_premium(ctx: CtxDep, body: PremiumReservationRequest) -> dict[str, Any]:
    return await _forward_premium(ctx, "release", body)


@internal.post("/premiums:pay-from-quota", dependencies=[Depends(require_internal)],
               response_model=PremiumReservation)
async def premium_from_quota(ctx: CtxDep, body: PremiumQuotaRequest) -> dict[str, Any]:
    return await _forward_premium(ctx, "pay-from-quota", body)
