"""What every use case of the national interface shares: the node's failures as till messages, the deadline the
node is given, and the refusal of a message reversed while it was on its way."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from services.pharmacy_gateway.adapters import federation_http as remote
from services.pharmacy_gateway.service_layer.context import GatewayContext
from services.pharmacy_gateway.service_layer.exchange import Exchange

Handler = Callable[[Exchange], Awaitable[dict[str, Any]]]

NODE_ERRORS = (remote.Refused, remote.Unreachable, remote.OutcomeUnknown)


def node_refusal(payer_admdvs: str, exc: Exception, *, moves_money: bool) -> str:
    """What the till is told when the payer's node refused, could not be reached, or did not answer: whether
    money may have moved, and what is safe to do."""
    if isinstance(exc, remote.Refused):
        return exc.message or exc.code
    if isinstance(exc, remote.Unreachable):
        tail = "; nothing was charged" if moves_money else ""
        return f"the payer's home province {payer_admdvs} is unavailable{tail}; try again later"
    where = f"the payer's home province {payer_admdvs}: {exc}"
    if moves_money:
        return f"{where}; the outcome is unknown: reverse this message with 2601 before trying again"
    return f"{where}; try again"


def answer_by(ctx: GatewayContext) -> datetime:
    """Until when the gateway waits for the payer's node, from now (just before the call): the node applies
    nothing that reaches its ledger later."""
    return ctx.clock.now() + timedelta(seconds=ctx.settings.province_call_timeout_s)


def reversed_note(row: Any) -> str | None:
    """The refusal for a money message a 2601 reversed while the node was being asked (its log row)."""
    return f"message {row.msgid} was reversed by 2601 {row.reversed_by}" if row is not None and row.reversed_by \
        else None

