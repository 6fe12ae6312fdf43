"""Admin API of the gateway (operator token, Idempotency-Key): institutions and the catalogue."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.pharmacy_gateway.entrypoints.deps import CtxDep
from services.pharmacy_gateway.service_layer import admin
from services.pharmacy_gateway.service_layer.admin import CatalogueImport, InstitutionRegistration
from shared.idempotency import run_idempotent
from shared.web import require_operator

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/institutions", status_code=201, dependencies=[Depends(require_operator)], responses={
    200: {"description": "registered again: new credentials, the old paas_id stops working"}})
async def register_institution(request: Request, ctx: CtxDep, body: InstitutionRegistration) -> Response:
    response = await run_idempotent(request, ctx.db, "operator",
                                    lambda uow: admin.register_institution(ctx, uow, body),
                                    status=lambda registered: 201 if registered.created else 200,
                                    view=lambda registered: registered.institution)
    await ctx.registry.load(ctx.db)  # committed: the new credentials work from the next message on
    return response


@router.post("/catalogue:import", dependencies=[Depends(require_operator)])
async def import_catalogue(request: Request, ctx: CtxDep, body: CatalogueImport) -> Response:
    response = await run_idempotent(request, ctx.db, "operator", lambda uow: admin.import_catalogue(ctx, uow, body),
                                    status=200)
    await ctx.registry.load(ctx.db)
    return response
