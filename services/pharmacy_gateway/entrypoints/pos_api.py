"""`POST /fsi/api/rsfComIfsService/callService`: the national 两定机构 interface (API.md "POS API"). The body
is read raw: the envelope is parsed by the service layer (exact Decimal amounts), and nothing a till sends can
turn into a 422 or a 500; every answer is the national envelope. Served on the fast lane (shared/web.py
FastLane): a till waits on every call."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import Headers

from services.pharmacy_gateway.domain.wire import CALL_SERVICE_PATH
from services.pharmacy_gateway.service_layer.context import GatewayContext
from services.pharmacy_gateway.service_layer.pos_handlers import call_service
from shared.web import FastRoute


async def _call_service(state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    ctx: GatewayContext = state.ctx
    status, body = await call_service(ctx, headers, raw)
    return status, orjson.dumps(body)


ROUTES = [FastRoute(CALL_SERVICE_PATH, _call_service)]
