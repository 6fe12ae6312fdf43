"""Citizen API of a province node (../shared/API.md "Citizen API")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.province_node.entrypoints.auth import CitizenDep
from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer import binding_freshness, bindings, me, persons, sms_confirmation, transfers
from services.province_node.service_layer.bindings import ID_NO_PATTERN, BindingRequest, Relation
from shared.db import ReadView
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN, above_max_amount, whole_number
from shared.openapi import refusal
from shared.web import ApiError

router = APIRouter(prefix="/v1", tags=["citizen"])
# Binding ids are the hub's "B" + hex: anything else is refused here (422), never passed on to the hub.
BINDING_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
BINDING_ID_SCHEMA = {"type": "string", "pattern": BINDING_ID_PATTERN}
BINDING_ID_PATH = Path(pattern=BINDING_ID_PATTERN)
BindingId = Annotated[str, BINDING_ID_PATH]


def bounded_amount(amount_fen: object, field: str) -> object:
    """Every amount a citizen or an operator names is at most MAX_AMOUNT_FEN (API.md "Conventions"); refused
    here, before anything runs, with the code the use cases give any other amount they cannot take. Returned as
    the use case takes it: a JSON number without a fraction (`500.0`) is the integer its schema allows (JSON
    Schema's `integer` is any number whose fraction is zero), anything else as it came."""
    amount_fen = whole_number(amount_fen)
    problem = above_max_amount(amount_fen, field)
    if problem is not None:
        raise ApiError(422, "INVALID_AMOUNT", problem)
    return amount_fen


@router.get("/me")
async def get_me(ctx: CtxDep, claims: CitizenDep) -> dict[str, Any]:
    async with ReadView(ctx.db) as view:
        return await me.me(ctx, view, claims.psn_no)


@router.post("/wallet:open", status_code=201, responses={200: {"description": "already open: the same wallet"}})
async def open_wallet(request: Request, ctx: CtxDep, claims: CitizenDep) -> Response:
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: persons.open_wallet(ctx, uow, claims.psn_no),
                                status=lambda opened: 201 if opened.created else 200,
                                view=lambda opened: {"status": "OPEN", "balance_fen": opened.balance_fen})


class BindingCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    relative_id_no: str = Field(pattern=ID_NO_PATTERN)
    relative_name: str = Field(min_length=1, max_length=64)
    relation: Relation


@router.post("/bindings", status_code=201, responses={
    409: refusal("BINDING_EXISTS"), 422: refusal("INVALID_ID_NO", "GIVER_NOT_EMPLOYEE", "KINSHIP_NOT_VERIFIED",
                                                 "RELATIVE_NOT_INSURED", when="a wrong check digit; the rules")})
async def create_binding(request: Request, ctx: CtxDep, body: BindingCreate, claims: CitizenDep) -> Response:
    command = BindingRequest(body.relative_id_no, body.relative_name, body.relation)
    key = request.headers.get("idempotency-key")
    request_key = f"{claims.psn_no}:{key}" if key else None
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: bindings.record_created(ctx, uow, snapshot),
                                prepare=lambda: bindings.request_binding(ctx, claims, command, request_key), status=201)


@router.get("/bindings")
async def list_bindings(ctx: CtxDep, claims: CitizenDep) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await bindings.list_bindings(view, claims.psn_no)


@router.post("/bindings/{binding_id}:confirm")
async def confirm_binding(request: Request, ctx: CtxDep, binding_id: BindingId, claims: CitizenDep) -> Response:
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: sms_confirmation.record_face_confirmation(ctx, uow, snapshot),
                                prepare=lambda: bindings.confirm_at_hub(ctx, claims, binding_id), status=200)


@router.delete("/bindings/{binding_id:id}")  # :id, so that "B1:confirm" is no binding id (shared/openapi.py)
async def end_binding(request: Request, ctx: CtxDep, binding_id: BindingId, claims: CitizenDep) -> Response:
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow, snapshot: bindings.record_change(ctx, uow, snapshot),
                                prepare=lambda: bindings.end_at_hub(ctx, claims, binding_id), status=200)


def json_body(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    """The request body as OpenAPI documents it, for routes that read a plain dict so that each field's own
    refusal code (INVALID_AMOUNT, ...) is kept: the bounds the use case enforces, written down."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}}




@router.post("/transfers", status_code=202, responses={
    403: refusal("STEP_UP_REQUIRED"), 404: refusal("BINDING_NOT_FOUND"),
    422: refusal("TRANSFER_LIMIT_DAILY", "TRANSFER_LIMIT_AMOUNT", "TRANSFER_QUIET_HOURS", "INSUFFICIENT_FUNDS",
                 "BINDING_NOT_ACTIVE", "WALLET_NOT_OPEN")},
             openapi_extra=json_body(["binding_id", "amount_fen"], {
    "binding_id": BINDING_ID_SCHEMA,
    "amount_fen": {"type": "integer", "minimum": 1, "maximum": MAX_AMOUNT_FEN}}))
async def send_transfer(request: Request, ctx: CtxDep, body: Annotated[dict[str, Any], Body()],
                        claims: CitizenDep) -> Response:
    body["amount_fen"] = bounded_amount(body.get("amount_fen"), "amount_fen")
    binding_id = body.get("binding_id")
    return await run_idempotent(
        request, ctx.db, claims.psn_no,
        binding_freshness.fresh(ctx, lambda uow: transfers.send_transfer(ctx, uow, claims, binding_id,
                                                                         body.get("amount_fen"))),
        prepare=lambda: binding_freshness.hub_view(ctx, claims.psn_no, binding_id), status=202,
        lazy_prepare=True)


@router.post("/transfers/{transfer_id}:accept")
async def accept_transfer(request: Request, ctx: CtxDep, transfer_id: str, claims: CitizenDep) -> Response:
    """The receiver accepts a transfer held for acceptance (provinces where receivers must accept)."""
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: transfers.accept_transfer(ctx, uow, claims, transfer_id), status=200)


@router.get("/transfers/{transfer_id:id}")  # not "T1:accept" (shared/openapi.py)
async def get_transfer(ctx: CtxDep, transfer_id: str, claims: CitizenDep) -> dict[str, Any]:
    async with ReadView(ctx.db) as view:
        return await transfers.get_transfer(view, claims.psn_no, transfer_id)


@router.get("/transfers")
async def list_transfers(ctx: CtxDep, claims: CitizenDep,  # role: the use case's VALIDATION_ERROR, documented
                         role: Annotated[str, Query(json_schema_extra={"enum": ["sent", "received"]})] = "sent"
                         ) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await transfers.list_transfers(view, claims.psn_no, role)


@router.get("/notifications")
async def list_notifications(ctx: CtxDep, claims: CitizenDep) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await bindings.list_notifications(view, claims.psn_no)
