"""Internal API of a node (internal token): the hub tells the giver's node of a confirm or an end made through the
relative's node, before answering it (issue 13, confirm-then-send; national_hub/service_layer/binding_push.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer.bindings import apply_snapshot
from shared.contracts.internal_api import BindingResponse
from shared.db import UnitOfWork, in_unit_of_work
from shared.web import require_internal

internal_router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal)])


@internal_router.post("/bindings:apply")
async def apply_binding(ctx: CtxDep, body: BindingResponse) -> dict[str, Any]:
    """The replica takes the snapshot if newer (the same code and notices as the event, which then finds nothing
    newer); idempotent."""

    async def apply(uow: UnitOfWork) -> bool:
        return await apply_snapshot(ctx, uow, body.binding)

    changed = await in_unit_of_work(ctx.db, apply)
    return {"applied": changed}
