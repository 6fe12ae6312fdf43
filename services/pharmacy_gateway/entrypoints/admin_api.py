"""Admin API of the gateway (operator token, Idempotency-Key): institutions and the catalogue."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.pharmacy_gateway.service_layer import admin
from services.pharmacy_gateway.service_layer.admin import CatalogueImport, InstitutionRegistration
from services.pharmacy_gateway.service_layer.context import GatewayContext
from shared.idempotency import run_idempotent
from shared.web import require_operator

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


@router.post("/institutions", status_code=201, dependencies=[Depends(require_operator)])
async def register_institution(request: Request, body: InstitutionRegistration) -> Response:
    ctx = _ctx(request)
    response = await run_idempotent(request, ctx.db, "operator",
                                    lambda uow: admin.register_institution(ctx, uow, body))
    await ctx.registry.load(ctx.db)  # committed: the new credentials work from the next message on
    return response


@router.post("/catalogue:import", dependencies=[Depends(require_operator)])
async def import_catalogue(request: Request, body: CatalogueImport) -> Response:
    ctx = _ctx(request)
    response = await run_idempotent(request, ctx.db, "operator", lambda uow: admin.import_catalogue(ctx, uow, body))
    await ctx.registry.load(ctx.db)
    return response
