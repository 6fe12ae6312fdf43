"""1101: who the presented credential is, asked of their home province (nothing is written but the log)."""

from __future__ import annotations

from typing import Any

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer.exchange import Exchange
from services.pharmacy_gateway.service_layer.pos.common import NODE_ERRORS, node_refusal
from services.pharmacy_gateway.service_layer.routing import payer_of
from shared.clock import SHANGHAI
from shared.contracts.internal_api import PosPersonQuery


async def person(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        credential = nhsa_inputs.parse_1101(exchange.input)
        payer = await payer_of(ctx, credential.cert_type, credential.cert_no)
        try:
            found = await ctx.nodes.person(payer.admdvs, PosPersonQuery(psn_no=payer.psn_no))
        except NODE_ERRORS as exc:
            raise Refused(node_refusal(payer.admdvs, exc, moves_money=False)) from exc
        if found is None:
            raise Refused("the person is no longer insured in their home province")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    today = ctx.clock.now().astimezone(SHANGHAI).date()
    return await exchange.finish_with(exchange.answer(nhsa_output.person_output(found, today)))
