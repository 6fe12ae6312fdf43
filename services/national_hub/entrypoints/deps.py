"""What the hub's routes take through FastAPI's dependencies: `ctx: CtxDep` is the hub's context. `async def`:
a plain `def` dependency would run in a worker thread."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.national_hub.service_layer.context import HubContext


async def get_ctx(request: Request) -> HubContext:
    ctx: HubContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[HubContext, Depends(get_ctx)]
