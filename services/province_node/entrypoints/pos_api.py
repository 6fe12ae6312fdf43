"""The node's internal POS API, called by the pharmacy gateway while the till waits (internal token).
Bodies are in shared/contracts/internal_api.py; refusals are the usual 4xx error body with a stable code,
which the gateway turns into infcode -1 with the message. Served as fast routes (shared/web.py FastRoute):
a till waits on every one of these calls. The internal token is checked before the body is read."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.datastructures import Headers

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
from shared.db import ReadView, UnitOfWork, in_unit_of_work
from shared.web import FastDoc, FastRoute, parse_body, require_static_token

PREFIX = "/internal/v1/pos"
In = TypeVar("In", bound=BaseModel)


def internal_only(state: Any, headers: Headers) -> None:
    """The fast routes' token check, before their body is read."""
    ctx: NodeContext = state.ctx
    require_static_token(headers, ctx.settings.internal_token, "internal")


def _route(path: str, summary: str, body_model: type[In], answer_model: type[BaseModel],
           answer: Callable[[NodeContext, In], Awaitable[BaseModel]]) -> FastRoute:
    async def handler(state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
        ctx: NodeContext = state.ctx
        body = parse_body(body_model, raw)
        return 200, (await answer(ctx, body)).model_dump_json().encode()

    return FastRoute(PREFIX + path, handler, auth=internal_only,
                     doc=FastDoc(summary, body_model, answer_model, tags=("internal POS",), bearer=True))


async def _lookup_person(ctx: NodeContext, body: PosPersonQuery) -> BaseModel:
    async with ReadView(ctx.db) as view:
        return await pos_payments.lookup_person(ctx, view, body)


async def _preview(ctx: NodeContext, body: PosPaymentRequest) -> BaseModel:
    async with ReadView(ctx.db) as view:
        return await pos_payments.preview(ctx, view, body)


def _writing(use_case: Callable[[NodeContext, UnitOfWork, In], Awaitable[BaseModel]]) -> Callable[
        [NodeContext, In], Awaitable[BaseModel]]:
    async def answer(ctx: NodeContext, body: In) -> BaseModel:
        return await in_unit_of_work(ctx.db, lambda uow: use_case(ctx, uow, body))

    return answer


ROUTES = [
    _route("/persons:lookup", "1101: the person a POS identifies, with balances", PosPersonQuery, PosPerson,
           _lookup_person),
    _route("/payments:preview", "2101: the split a settle would make now; nothing moves", PosPaymentRequest,
           PosSplitPreview, _preview),
    _route("/payments:settle", "2102: settle, once per msgid", PosPaymentRequest, PosPaymentResult,
           _writing(pos_payments.settle)),
    _route("/payments:cancel", "2103: every part back where it came from", PosCancelRequest, PosPaymentResult,
           _writing(pos_payments.cancel)),
    _route("/payments:reverse", "2601: undo what a message did, or make sure it never does", PosReverseRequest,
           PosPaymentResult, _writing(pos_payments.reverse)),
]
