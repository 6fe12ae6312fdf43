"""2101 pre-settle and 2102 settle: the bill checked and split here, the money moved at the payer's home node.

A 2102 is logged PENDING before its node is asked (Exchange.begin) and its answer is stored with the gateway's
record of the settlement (settlements.record) in one transaction; a refusal before the node is asked changes
nothing anywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.nhsa_inputs import Purchase
from services.pharmacy_gateway.domain.wire import Refused, wire_time
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.exchange import Exchange
from services.pharmacy_gateway.service_layer.pos.common import NODE_ERRORS, answer_by, node_refusal, reversed_note
from services.pharmacy_gateway.service_layer.routing import payer_of
from shared.contracts.internal_api import PosPaymentRequest
from shared.db import UnitOfWork


@dataclass(frozen=True)
class Checked:
    """A purchase that passed every check the gateway can make, the payer's node and its request."""

    purchase: Purchase
    payer_admdvs: str
    request: PosPaymentRequest


async def _checked(exchange: Exchange) -> Checked:
    """Everything 2101 and 2102 check before asking the node."""
    ctx = exchange.ctx
    purchase = nhsa_inputs.parse_2102(exchange.input, ctx.registry.category_of)
    payer = await payer_of(ctx, purchase.credential.cert_type, purchase.credential.cert_no)
    if payer.psn_no != purchase.psn_no:
        raise Refused("psn_no is not the person of the presented credential (mdtrt_cert_no)")
    nhsa_inputs.check_claimed_province(exchange.envelope.get("insuplc_admdvs"), payer.admdvs)
    request = PosPaymentRequest(msgid=exchange.msgid, psn_no=purchase.psn_no, insutype=purchase.insutype,
                                fixmedins_code=exchange.institution.fixmedins_code,
                                medfee_fen=purchase.bill.medfee_fen, eligible_fen=purchase.bill.eligible_fen,
                                use_accounts=purchase.use_accounts)
    return Checked(purchase, payer.admdvs, request)


async def presettle(exchange: Exchange) -> dict[str, Any]:
    """2101: the split 2102 would make now; nothing moves."""
    ctx = exchange.ctx
    try:
        checked = await _checked(exchange)
        try:
            preview = await ctx.nodes.preview(checked.payer_admdvs, checked.request)
        except NODE_ERRORS as exc:
            raise Refused(node_refusal(checked.payer_admdvs, exc, moves_money=False)) from exc
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    return await exchange.finish_with(exchange.answer(nhsa_output.presettle_output(
        checked.purchase, checked.payer_admdvs, preview, wire_time(ctx.clock.now()))))


async def settle(exchange: Exchange) -> dict[str, Any]:
    """2102, once per msgid."""
    ctx = exchange.ctx
    try:
        checked = await _checked(exchange)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    admdvs = checked.payer_admdvs
    instead = await exchange.begin(admdvs)
    if instead is not None:
        return instead
    try:
        result = await ctx.nodes.settle(admdvs, checked.request.model_copy(update={"answer_by": answer_by(ctx)}))
    except NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(node_refusal(admdvs, exc, moves_money=True)))
    payment = result.payment
    assert payment is not None, "a settle always answers with its payment"

    async def build(uow: UnitOfWork, row: Any) -> dict[str, Any]:
        await settlements.record(ctx, uow, payment, institution=exchange.institution, payer_admdvs=admdvs,
                                 msgid=exchange.msgid)
        note = reversed_note(row)
        if note:
            return exchange.refuse(note)
        return exchange.answer(nhsa_output.settle_output(checked.purchase, admdvs, payment, result.balances_after))

    return await exchange.finish(build)
