"""What the node's routes take through FastAPI's dependencies: `ctx: CtxDep` is the node's context (the
signed-in citizen is auth.CitizenDep). `async def`, as auth.citizen: a plain `def` dependency would run in a
worker thread."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.province_node.service_layer.context import NodeContext


async def get_ctx(request: Request) -> NodeContext:
    ctx: NodeContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[NodeContext, Depends(get_ctx)]
