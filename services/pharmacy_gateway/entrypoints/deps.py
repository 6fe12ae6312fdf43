"""What the gateway's routes take through FastAPI's dependencies: `ctx: CtxDep` is the gateway's context.
`async def`: a plain `def` dependency would run in a worker thread."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.pharmacy_gateway.service_layer.context import GatewayContext


async def get_ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[GatewayContext, Depends(get_ctx)]
