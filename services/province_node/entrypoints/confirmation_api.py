"""Confirmations for relatives without a smartphone (issue 13, API.md "Citizen API"): the SMS gateway's
inbound replies, the operators' clerk accounts, and the clerks' counter confirmations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer import counter, sms_confirmation
from services.province_node.service_layer.bindings import ID_NO_PATTERN
from services.province_node.service_layer.counter import CLERK_ID_PATTERN
from services.province_node.service_layer.sms_confirmation import PHONE_PATTERN
from shared.idempotency import run_idempotent
from shared.openapi import refusal
from shared.web import bearer_token, require_operator, require_static_token

router = APIRouter(tags=["confirmation"])
BINDING_ID = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")


class SmsInbound(BaseModel):
    """One SMS reply as the gateway delivers it."""

    model_config = ConfigDict(extra="ignore")

    from_phone: str = Field(min_length=1, max_length=20, pattern=PHONE_PATTERN)
    text: str = Field(max_length=500)


class ClerkCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    clerk_id: str = Field(pattern=CLERK_ID_PATTERN)
    name: str = Field(min_length=1, max_length=64)


class CounterConfirm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    relative_id_no: str = Field(pattern=ID_NO_PATTERN)
    relative_name: str = Field(min_length=1, max_length=64)


class SmsAnswer(BaseModel):
    handled: bool
    reason: str | None = None  # why not: NOT_A_CONFIRMATION, UNKNOWN_PHONE, NO_PENDING_BINDING, WRONG_CODE, ...
    binding_id: str | None = None
    state: str | None = None


class ClerkCreated(BaseModel):
    clerk_id: str
    clerk_token: str


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The route's own refusals; shared/openapi.py gives each the error body's schema."""
    return {status: {"description": "refused; nothing changed"} for status in statuses}


async def clerk(request: Request, ctx: CtxDep) -> str:
    """The counter routes' dependency: the clerk behind the bearer token, at their own province's node."""
    return await counter.clerk_of_token(ctx, bearer_token(request))


ClerkDep = Annotated[str, Depends(clerk)]


async def require_sms_gateway(request: Request, ctx: CtxDep) -> None:
    require_static_token(request, ctx.settings.sms_inbound_token, "SMS inbound")


@router.post("/v1/sms/inbound", dependencies=[Depends(require_sms_gateway)],
             responses={200: {"model": SmsAnswer}, **refusals(401, 409, 422, 503)})
async def sms_inbound(request: Request, ctx: CtxDep, body: SmsInbound) -> Response:
    """One SMS reply: `确认 <code>` from the relative's registered phone confirms; anything else is
    `{handled: false, reason}` (only a wrong code is counted: 5 void the codes)."""
    return await run_idempotent(request, ctx.db, "sms-gateway",
                                lambda uow, plan: sms_confirmation.handle(ctx, uow, plan),
                                prepare=lambda: sms_confirmation.plan(ctx, body.from_phone, body.text), status=200)


@router.post("/v1/admin/clerks", status_code=201, dependencies=[Depends(require_operator)],
             responses={201: {"model": ClerkCreated}, **refusals(401, 409, 422)})
async def create_clerk(request: Request, ctx: CtxDep, body: ClerkCreate) -> Response:
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: counter.create_clerk(ctx, uow, body.clerk_id, body.name), status=201)


@router.post("/v1/counter/bindings/{binding_id}:confirm", responses={
    **refusals(401, 403, 409, 503), 404: refusal("BINDING_NOT_FOUND", when="no binding awaits this person's consent"),
    422: refusal("INVALID_ID_NO", when="a wrong check digit")})
async def counter_confirm(request: Request, ctx: CtxDep, body: CounterConfirm,
                          binding_id: Annotated[str, BINDING_ID], clerk_id: ClerkDep) -> Response:
    return await run_idempotent(request, ctx.db, f"clerk|{clerk_id}",
                                lambda uow, plan: counter.record(ctx, uow, plan),
                                prepare=lambda: counter.confirm_at_hub(ctx, clerk_id, binding_id, body.relative_id_no,
                                                                       body.relative_name), status=200)
