"""Quota and premium endpoints of a province node: citizen API (../shared/API.md) and the internal calls the
hub forwards to the beneficiary's node."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response

from services.province_node.entrypoints.auth import citizen
from services.province_node.entrypoints.citizen_api import BINDING_ID_PATH, bounded_amount, json_body
from services.province_node.service_layer import binding_freshness, premiums, quotas
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.premiums import PremiumRequest
from shared.contracts.internal_api import PremiumQuotaRequest, PremiumReservationRequest
from shared.db import in_unit_of_work
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN
from shared.tokens import Claims
from shared.web import require_internal

router = APIRouter(tags=["citizen"])
internal_router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal)])


def _ctx(request: Request) -> NodeContext:
    ctx: NodeContext = request.app.state.ctx
    return ctx


@router.put("/v1/bindings/{binding_id}/quota", openapi_extra=json_body(["annual_quota_fen"], {
    "annual_quota_fen": {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_FEN}}))
async def set_quota(request: Request, binding_id: str = BINDING_ID_PATH, body: dict[str, Any] = Body(...),
                    claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    bounded_amount(body.get("annual_quota_fen"), "annual_quota_fen")
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        binding_freshness.fresh(ctx, lambda uow: quotas.set_quota(ctx, uow, claims, binding_id,
                                                                  body.get("annual_quota_fen"))),
        prepare=lambda: binding_freshness.hub_view(ctx, claims.psn_no, binding_id))


@router.post("/v1/premiums", status_code=201)
async def pay_premium(request: Request, body: PremiumRequest, claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    bounded_amount(body.amount_fen, "amount_fen")
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        lambda uow, reservation: premiums.pay(ctx, uow, claims, body, reservation),
        prepare=lambda: premiums.prepare(ctx, claims, body, request.headers.get("idempotency-key")))



@internal_router.post("/premiums:reserve")
async def reserve_premium(request: Request, body: PremiumReservationRequest) -> dict[str, Any]:
    ctx = _ctx(request)
    return await in_unit_of_work(ctx.db, lambda uow: premiums.reserve(ctx, uow, body))


@internal_router.post("/premiums:release")
async def release_premium(request: Request, body: PremiumReservationRequest) -> dict[str, Any]:
    ctx = _ctx(request)
    return await in_unit_of_work(ctx.db, lambda uow: premiums.release(ctx, uow, body))


@internal_router.post("/premiums:pay-from-quota")
async def premium_from_quota(request: Request, body: PremiumQuotaRequest) -> dict[str, Any]:
    ctx = _ctx(request)
    return await in_unit_of_work(ctx.db, lambda uow: premiums.pay_from_quota(ctx, uow, body))
