"""Quota and premium endpoints of a province node: citizen API (../shared/API.md) and the internal calls the
hub forwards to the beneficiary's node."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.province_node.entrypoints.auth import CitizenDep
from services.province_node.entrypoints.citizen_api import BindingId, bounded_amount, json_body
from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer import binding_freshness, premiums, quotas
from services.province_node.service_layer.premiums import PremiumPaymentRequest
from shared.contracts.internal_api import PremiumQuotaRequest, PremiumReservationRequest
from shared.db import in_unit_of_work
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN
from shared.openapi import refusal
from shared.web import require_internal

router = APIRouter(tags=["citizen"])


class PremiumRequest(BaseModel):
    # What the use case checks with its own codes (INVALID_ID_NO, INVALID_AMOUNT, VALIDATION_ERROR for a quota
    # payment without its binding), written into the schema (API.md "Conventions": the document tells the truth).
    model_config = ConfigDict(extra="ignore", json_schema_extra={
        "if": {"properties": {"payer": {"const": "quota"}}, "required": ["payer"]},
        "then": {"required": ["binding_id"], "properties": {"binding_id": {"type": "string", "minLength": 1}}}})

    beneficiary_id_no: str = Field(json_schema_extra={"pattern": r"^\s*\d{17}[\dXx]\s*$"})
    year: int = Field(ge=2000, le=2100)
    amount_fen: Any = Field(json_schema_extra={"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_FEN})
    payer: Literal["wallet", "quota"]
    binding_id: str | None = None


internal_router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal)])


@router.put("/v1/bindings/{binding_id}/quota", responses={
    403: refusal("STEP_UP_REQUIRED"), 404: refusal("BINDING_NOT_FOUND"),
    422: refusal("BINDING_NOT_ACTIVE", "INSUFFICIENT_FUNDS", "QUOTA_CLOSED")},
            openapi_extra=json_body(["annual_quota_fen"], {
                "annual_quota_fen": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_FEN}}))
async def set_quota(request: Request, ctx: CtxDep, binding_id: BindingId, body: Annotated[dict[str, Any], Body()],
                    claims: CitizenDep) -> Response:
    body["annual_quota_fen"] = bounded_amount(body.get("annual_quota_fen"), "annual_quota_fen")
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        binding_freshness.fresh(ctx, lambda uow: quotas.set_quota(ctx, uow, claims, binding_id,
                                                                  body.get("annual_quota_fen"))),
        prepare=lambda: binding_freshness.hub_view(ctx, claims.psn_no, binding_id), status=200,
        lazy_prepare=True)


@router.post("/v1/premiums", status_code=201, responses={
    404: refusal("PERSON_NOT_FOUND", "QUOTA_NOT_FOUND"), 409: refusal("PREMIUM_ALREADY_PAID"),
    422: refusal("INVALID_ID_NO", "PREMIUM_NOT_RESIDENT", "WALLET_NOT_OPEN", "INSUFFICIENT_FUNDS", "BINDING_NOT_ACTIVE",
                 when="a wrong check digit; the rules")})
async def pay_premium(request: Request, ctx: CtxDep, body: PremiumRequest, claims: CitizenDep) -> Response:
    body.amount_fen = bounded_amount(body.amount_fen, "amount_fen")
    command = PremiumPaymentRequest(**body.model_dump())
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        lambda uow, reservation: premiums.pay(ctx, uow, claims, command, reservation),
        prepare=lambda: premiums.prepare(ctx, claims, command, request.headers.get("idempotency-key")), status=201)



@internal_router.post("/premiums:reserve")
async def reserve_premium(ctx: CtxDep, body: PremiumReservationRequest) -> dict[str, Any]:
    return await in_unit_of_work(ctx.db, lambda uow: premiums.reserve(ctx, uow, body))


@internal_router.post("/premiums:release")
async def release_premium(ctx: CtxDep, body: PremiumReservationRequest) -> dict[str, Any]:
    return await in_unit_of_work(ctx.db, lambda uow: premiums.release(ctx, uow, body))


@internal_router.post("/premiums:pay-from-quota")
async def premium_from_quota(ctx: CtxDep, body: PremiumQuotaRequest) -> dict[str, Any]:
    return await in_unit_of_work(ctx.db, lambda uow: premiums.pay_from_quota(ctx, uow, body))
