"""Citizen API of a province node (../shared/API.md "Citizen API")."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import Response

from services.province_node.entrypoints.auth import citizen
from services.province_node.service_layer import binding_freshness, bindings, me, persons, sms_confirmation, transfers
from services.province_node.service_layer.bindings import BindingCreate
from services.province_node.service_layer.context import NodeContext
from shared.db import ReadView
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN, above_max_amount
from shared.tokens import Claims
from shared.web import ApiError

router = APIRouter(prefix="/v1", tags=["citizen"])
# Binding ids are the hub's "B" + hex: anything else is refused here (422), never passed on to the hub.
BINDING_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
BINDING_ID_SCHEMA = {"type": "string", "pattern": BINDING_ID_PATTERN}
BINDING_ID_PATH = Path(pattern=BINDING_ID_PATTERN)


def _ctx(request: Request) -> NodeContext:
    ctx: NodeContext = request.app.state.ctx
    return ctx


def bounded_amount(amount_fen: object, field: str) -> None:
    """Every amount a citizen or an operator names is at most MAX_AMOUNT_FEN (API.md "Conventions"); refused
    here, before anything runs, with the code the use cases give any other amount they cannot take."""
    problem = above_max_amount(amount_fen, field)
    if problem is not None:
        raise ApiError(422, "INVALID_AMOUNT", problem)


@router.get("/me")
async def get_me(request: Request, claims: Claims = Depends(citizen)) -> dict[str, Any]:
    ctx = _ctx(request)
    async with ReadView(ctx.db) as view:
        return await me.me(ctx, view, claims.psn_no)


@router.post("/wallet:open", status_code=201, responses={200: {"description": "already open: the same wallet"}})
async def open_wallet(request: Request, claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: persons.open_wallet(ctx, uow, claims.psn_no))


@router.post("/bindings", status_code=201)
async def create_binding(request: Request, body: BindingCreate, claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    key = request.headers.get("idempotency-key")
    request_key = f"{claims.psn_no}:{key}" if key else None
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: bindings.record_created(ctx, uow, snapshot),
                                prepare=lambda: bindings.request_binding(ctx, claims, body, request_key))


@router.get("/bindings")
async def list_bindings(request: Request, claims: Claims = Depends(citizen)) -> list[dict[str, Any]]:
    async with ReadView(_ctx(request).db) as view:
        return await bindings.list_bindings(view, claims.psn_no)


@router.post("/bindings/{binding_id}:confirm")
async def confirm_binding(request: Request, binding_id: str = BINDING_ID_PATH,
                          claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: sms_confirmation.record_face_confirmation(ctx, uow, snapshot),
                                prepare=lambda: bindings.confirm_at_hub(ctx, claims, binding_id))


@router.delete("/bindings/{binding_id}")
async def end_binding(request: Request, binding_id: str = BINDING_ID_PATH,
                      claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: bindings.record_change(ctx, uow, snapshot),
                                prepare=lambda: bindings.end_at_hub(ctx, claims, binding_id))


def json_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """The request body as OpenAPI documents it, for routes that read a plain dict so that each field's own
    refusal code (INVALID_AMOUNT, ...) is kept: the bounds the use case enforces, written down."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}}




@router.post("/transfers", status_code=202, openapi_extra=json_body(["binding_id", "amount_fen"], {
    "binding_id": BINDING_ID_SCHEMA,
    "amount_fen": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_FEN}}))
async def send_transfer(request: Request, body: dict[str, Any] = Body(...),
                        claims: Claims = Depends(citizen)) -> Response:
    ctx = _ctx(request)
    bounded_amount(body.get("amount_fen"), "amount_fen")
    binding_id = body.get("binding_id")
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        binding_freshness.fresh(ctx, lambda uow: transfers.send_transfer(ctx, uow, claims, binding_id,
                                                                         body.get("amount_fen"))),
        prepare=lambda: binding_freshness.hub_view(ctx, claims.psn_no, binding_id))


@router.post("/transfers/{transfer_id}:accept")
async def accept_transfer(request: Request, transfer_id: str, claims: Claims = Depends(citizen)) -> Response:
    """The receiver accepts a transfer held for acceptance (provinces where receivers must accept)."""
    ctx = _ctx(request)
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: transfers.accept_transfer(ctx, uow, claims, transfer_id))


@router.get("/transfers/{transfer_id}")
async def get_transfer(request: Request, transfer_id: str, claims: Claims = Depends(citizen)) -> dict[str, Any]:
    async with ReadView(_ctx(request).db) as view:
        return await transfers.get_transfer(view, claims.psn_no, transfer_id)


@router.get("/transfers")
async def list_transfers(request: Request, role: str = Query("sent"),
                         claims: Claims = Depends(citizen)) -> list[dict[str, Any]]:
    async with ReadView(_ctx(request).db) as view:
        return await transfers.list_transfers(view, claims.psn_no, role)


@router.get("/notifications")
async def list_notifications(request: Request, claims: Claims = Depends(citizen)) -> list[dict[str, Any]]:
    async with ReadView(_ctx(request).db) as view:
        return await bindings.list_notifications(view, claims.psn_no)
