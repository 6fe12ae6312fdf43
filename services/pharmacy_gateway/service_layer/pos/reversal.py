"""2601, for pharmacies and for hospitals and clinics alike: undo what the original message (`omsgid`) did
while it is in force or, when it never arrived, make sure it never takes effect (API.md "POS API" and "Medical
institutions").

The flow is one (`reverse_with`); what differs per interface is a `ReversalFlow`: which originals may be named,
how the payer's node is asked, and what the answer reports. Where the 2601 goes is domain/nhsa_inputs.py's
`route_reversal`: where the original went, else the payer's home province (the start of the psn_no), else
nowhere (the gateway's own record is the whole reversal). The log row of the original is marked reversed, or,
when the gateway never saw it, a tombstone is left under its msgid, in the transaction that stores the
2601's answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import orjson
import sqlalchemy as sa

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.nhsa_inputs import LocalOnly, Reversal, Reversible
from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.exchange import MESSAGES, Build, Exchange, logged_message, read_message
from services.pharmacy_gateway.service_layer.pos.common import NODE_ERRORS, node_refusal
from shared.contracts.internal_api import PosPaymentResult, PosReverseRequest
from shared.db import UnitOfWork

Result = TypeVar("Result")


@dataclass(frozen=True)
class ReversalFlow(Generic[Result]):
    """What a 2601 of one interface does beyond the common flow."""

    reversible: Reversible
    # The payer's node (admdvs) asked to reverse: its answer.
    ask_node: Callable[[Exchange, str, Reversal], Awaitable[Result]]
    # Whether the node undid anything.
    undone: Callable[[Result], bool]
    # In the answer's transaction: record what the answer names, and return the output's further fields.
    conclude: Callable[[Exchange, UnitOfWork, str, Result], Awaitable[dict[str, Any]]]


async def reverse_with(exchange: Exchange, flow: ReversalFlow[Result]) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        reversal = nhsa_inputs.parse_2601(exchange.input, flow.reversible,
                                          fixmedins_code=exchange.institution.fixmedins_code, msgid=exchange.msgid)
        original = await read_message(ctx, reversal.omsgid)
        if original is not None and original.request_hash is not None:
            nhsa_inputs.check_original(flow.reversible, reversal, original.infno)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    route = nhsa_inputs.route_reversal(original, reversal.psn_no)
    if isinstance(route, LocalOnly):
        return await exchange.finish(_reversal_without_node(exchange, reversal))
    instead = await exchange.begin(route.admdvs, route.setl_id)
    if instead is not None:
        return instead
    try:
        result = await flow.ask_node(exchange, route.admdvs, reversal)
    except NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(node_refusal(route.admdvs, exc, moves_money=True)))

    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        if await logged_message(uow, reversal.omsgid) is None:
            await _leave_tombstone(uow, exchange, reversal)
        else:
            await _mark_reversed(uow, reversal.omsgid, exchange.msgid)
        output = nhsa_output.reversal_output(reversal, undone=flow.undone(result))
        return exchange.answer(output | await flow.conclude(exchange, uow, route.admdvs, result))

    return await exchange.finish(build)


def _reversal_without_node(exchange: Exchange, reversal: Reversal) -> Build:
    """The original never reached any node: it was never logged here (every money message is logged before its
    node is asked), or it was refused before that. The gateway's own record is then the whole reversal: the
    msgid is marked so that the original, should it still arrive, is refused."""
    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        original = await logged_message(uow, reversal.omsgid)
        if original is None:
            await _leave_tombstone(uow, exchange, reversal)
        elif original.payer_admdvs is not None:
            # The original arrived meanwhile and went to its node: this reversal must go there too.
            return exchange.refuse(f"message {reversal.omsgid} is being processed right now; send the 2601 again")
        else:
            await _mark_reversed(uow, reversal.omsgid, exchange.msgid)
        return exchange.answer(nhsa_output.reversal_output(reversal, undone=False))

    return build


async def _leave_tombstone(uow: UnitOfWork, exchange: Exchange, reversal: Reversal) -> None:
    """The log's row for a msgid reversed before the gateway saw it: the original, should it come, is refused."""
    tombstone = exchange.refuse(f"message {reversal.omsgid} was reversed by 2601 {exchange.msgid} before it "
                                "arrived; it can never take effect")
    await uow.execute(sa.insert(MESSAGES).values(
        msgid=reversal.omsgid, fixmedins_code=exchange.institution.fixmedins_code, infno=reversal.oinfno,
        state="DONE", response=orjson.dumps(tombstone), reversed_by=exchange.msgid,
        received_at=exchange.received_at, answered_at=exchange.received_at))


async def _mark_reversed(uow: UnitOfWork, omsgid: str, msgid: str) -> None:
    await uow.execute(sa.update(MESSAGES).where(MESSAGES.c.msgid == omsgid, MESSAGES.c.reversed_by.is_(None))
                      .values(reversed_by=msgid))


# ------------------------------------------------------------------------------------------------ pharmacies


async def _ask_pharmacy_node(exchange: Exchange, admdvs: str, reversal: Reversal) -> PosPaymentResult:
    oinfno: Literal["2102", "2103"] = "2102" if reversal.oinfno == "2102" else "2103"
    request = PosReverseRequest(msgid=exchange.msgid, omsgid=reversal.omsgid, oinfno=oinfno, psn_no=reversal.psn_no,
                                fixmedins_code=exchange.institution.fixmedins_code)
    return await exchange.ctx.nodes.reverse(admdvs, request)


async def _conclude_pharmacy(exchange: Exchange, uow: UnitOfWork, admdvs: str,
                             result: PosPaymentResult) -> dict[str, Any]:
    if result.payment is None:
        return {}
    await settlements.record(exchange.ctx, uow, result.payment, institution=exchange.institution,
                             payer_admdvs=admdvs, msgid=exchange.msgid)
    return nhsa_output.cancel_output(result.payment, result.balances_after)


PHARMACY = ReversalFlow[PosPaymentResult](
    reversible=nhsa_inputs.PHARMACY_REVERSIBLE, ask_node=_ask_pharmacy_node,
    undone=lambda result: result.effect != "NONE", conclude=_conclude_pharmacy)


async def reverse(exchange: Exchange) -> dict[str, Any]:
    """2601 from a pharmacy: of a 2102 or a 2103."""
    return await reverse_with(exchange, PHARMACY)
