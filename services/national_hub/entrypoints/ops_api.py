"""Operator API of the hub (../shared/API.md "Operator API"), behind the operator token."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import Response

from services.national_hub.service_layer import ops
from services.national_hub.service_layer.context import HubContext
from shared.db import ReadView
from shared.idempotency import run_idempotent
from shared.web import require_operator

router = APIRouter(prefix="/v1/ops", tags=["operator"], dependencies=[Depends(require_operator)])


def _ctx(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.ctx
    return ctx


@router.get("/stats")
async def stats(request: Request, from_month: str = Query(alias="from"),
                to_month: str = Query(alias="to")) -> dict[str, Any]:
    async with ReadView(_ctx(request).db) as view:
        return await ops.stats(view, from_month, to_month)


@router.get("/settlement-windows")
async def settlement_windows(request: Request) -> list[dict[str, Any]]:
    async with ReadView(_ctx(request).db) as view:
        return await ops.list_windows(view)


@router.post("/settlement-windows/current:close")
async def close_window(request: Request) -> Response:
    ctx = _ctx(request)
    return await run_idempotent(request, ctx.db, "operator", lambda uow: ops.close_current_window(ctx, uow))


@router.get("/alerts")
async def alerts(request: Request, state: str | None = Query(None)) -> list[dict[str, Any]]:
    async with ReadView(_ctx(request).db) as view:
        return await ops.list_alerts(view, state)


@router.post("/alerts/{alert_id}:resolve")
async def resolve_alert(request: Request, alert_id: str, body: dict[str, Any] | None = Body(None)) -> Response:
    ctx = _ctx(request)
    resolution = str((body or {}).get("resolution") or "") or None
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: ops.resolve_alert(ctx, uow, alert_id, resolution))
