"""`POST /fsi/api/rsfComIfsService/callService`: the national 两定机构 interface (API.md "POS API"). The body
is read raw: the envelope is parsed by the service layer (exact Decimal amounts), and nothing a till sends can
turn into a 422 or a 500; every answer is the national envelope, the adapter's own refusals included (a body
over the transport cap, a bug). Served as a fast route (shared/web.py FastRoute): a till waits on every call."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.datastructures import Headers

from services.pharmacy_gateway.domain.wire import CALL_SERVICE_PATH
from services.pharmacy_gateway.service_layer.context import GatewayContext
from services.pharmacy_gateway.service_layer.exchange import NonceReplayed, Unauthenticated
from services.pharmacy_gateway.service_layer.pos_handlers import call_service
from shared.web import FastRoute

# What the gateway reads at all. A message over the institution-facing limit (settings.max_message_bytes,
# 256 KiB by default) is still read and refused in the envelope (HTTP 200, infcode -1); this cap only keeps a
# caller from making the gateway hold any amount of memory.
MAX_BODY_BYTES = 4 * 1024 * 1024


async def _call_service(state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    ctx: GatewayContext = state.ctx
    try:
        body = await call_service(ctx, headers, raw)
    except Unauthenticated as exc:
        return 401, orjson.dumps({"infcode": -1, "err_msg": str(exc)})
    except NonceReplayed:
        return 401, orjson.dumps({"infcode": -1, "err_msg": "x-tif-nonce was already used"})
    return 200, orjson.dumps(body)


def _national_refusal(status: int, _code: str, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"infcode": -1, "err_msg": message})


ROUTES = [FastRoute(CALL_SERVICE_PATH, _call_service, max_body_bytes=MAX_BODY_BYTES, refusal=_national_refusal)]
