"""`POST /fsi/api/rsfComIfsService/callService`: the national 两定机构 interface (API.md "POS API"). The body
is read raw: the envelope is parsed by the service layer (exact Decimal amounts), and nothing a till sends can
turn into FastAPI's 422 or a 500; every answer is the national envelope."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.pharmacy_gateway.service_layer.context import GatewayContext
from services.pharmacy_gateway.service_layer.pos_handlers import call_service
from shared.web import ORJSONResponse

router = APIRouter(tags=["pos"])


@router.post("/fsi/api/rsfComIfsService/callService")
async def call_service_route(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.ctx
    status, body = await call_service(ctx, request.headers, await request.body())
    return ORJSONResponse(body, status_code=status)
