"""The node's internal POS API, called by the pharmacy gateway while the till waits (internal token).
Bodies are in shared/contracts/internal_api.py; refusals are the usual 4xx error body with a stable code,
which the gateway turns into infcode -1 with the message."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from services.province_node.entrypoints.auth import internal
from services.province_node.service_layer import pos_payments
from services.province_node.service_layer.context import NodeContext
from shared.contracts.internal_api import (
    PosCancelRequest,
    PosPaymentRequest,
    PosPaymentResult,
    PosPerson,
    PosPersonQuery,
    PosReverseRequest,
    PosSplitPreview,
)
from shared.db import ReadView, in_unit_of_work
from shared.web import model_response

router = APIRouter(prefix="/internal/v1/pos", tags=["internal"], dependencies=[Depends(internal)])


def _ctx(request: Request) -> NodeContext:
    ctx: NodeContext = request.app.state.ctx
    return ctx



@router.post("/persons:lookup")
async def lookup_person(request: Request, body: PosPersonQuery) -> PosPerson:
    ctx = _ctx(request)
    async with ReadView(ctx.db) as view:
        return await pos_payments.lookup_person(ctx, view, body)


@router.post("/payments:preview")
async def preview(request: Request, body: PosPaymentRequest) -> PosSplitPreview:
    ctx = _ctx(request)
    async with ReadView(ctx.db) as view:
        return await pos_payments.preview(ctx, view, body)


@router.post("/payments:settle", response_model=PosPaymentResult)
async def settle(request: Request, body: PosPaymentRequest) -> Response:
    ctx = _ctx(request)
    return model_response(await in_unit_of_work(ctx.db, lambda uow: pos_payments.settle(ctx, uow, body)))


@router.post("/payments:cancel", response_model=PosPaymentResult)
async def cancel(request: Request, body: PosCancelRequest) -> Response:
    ctx = _ctx(request)
    return model_response(await in_unit_of_work(ctx.db, lambda uow: pos_payments.cancel(ctx, uow, body)))


@router.post("/payments:reverse", response_model=PosPaymentResult)
async def reverse(request: Request, body: PosReverseRequest) -> Response:
    ctx = _ctx(request)
    return model_response(await in_unit_of_work(ctx.db, lambda uow: pos_payments.reverse(ctx, uow, body)))
