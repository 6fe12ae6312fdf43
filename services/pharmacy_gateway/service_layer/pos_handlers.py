"""The national 两定机构 interface's one endpoint (API.md "POS API"): every message, whatever its infno, is
authenticated, parsed and handed to its use case: the pharmacy interface's in service_layer/pos/ (9001 sign in,
1101 person, 2101 pre-settle, 2102 settle, 2103 cancel, 2601 reversal, 3201 reconciliation), hospitals' and
clinics' in medical_handlers.py.

`call_service` is the whole exchange: 401 for anything wrong with the x-tif headers (nothing happens), else
HTTP 200 with infcode 0, or -1 and an err_msg saying what was wrong. Money moves only at the payer's home node;
the gateway waits for it at most `province_call_timeout_s`. When the node cannot be reached the answer is -1
and nothing was charged; when it does not answer in time the answer is -1 "outcome unknown", and a 2601 then
makes both sides agree, whether the original took effect, is still on its way, or never arrives."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer import medical_handlers
from services.pharmacy_gateway.service_layer.context import GatewayContext
from services.pharmacy_gateway.service_layer.exchange import (
    Exchange,
    NonceReplayed,
    authenticate,
    check_signed_in,
    parse_envelope,
    request_hash,
)
from services.pharmacy_gateway.service_layer.pos import HANDLERS, Handler

__all__ = ["HANDLERS", "Handler", "call_service"]

log = logging.getLogger("yibao.gateway.pos")


async def call_service(ctx: GatewayContext, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The national envelope answering one message, a refusal included. A caller that is not an institution
    (Unauthenticated) or a nonce used already (NonceReplayed) is raised: the route answers those with 401."""
    received_at = ctx.clock.now()
    institution, nonce = await authenticate(ctx, headers)
    exchange = Exchange(ctx, institution, institution.paas_id, nonce, {}, "", received_at)
    try:
        try:
            exchange.envelope = parse_envelope(ctx, raw, institution)
            await check_signed_in(ctx, exchange.envelope, institution)
        except Refused as refused:
            await exchange.consume_nonce_only()
            return exchange.refuse(str(refused))
        exchange.request_hash = request_hash(exchange.envelope)
        handler = medical_handlers.handler_for(exchange) or HANDLERS[exchange.infno]
        return await handler(exchange)
    except NonceReplayed:
        raise
    except Exception:
        # A bug or the gateway's own database, never the till's fault; the till is told to reverse if in doubt.
        log.exception("POS message %s failed", exchange.envelope.get("infno"))
        return exchange.refuse("the gateway failed to process the message; if it was a 2102 or 2103, "
                               "reverse it with 2601 to be sure")
