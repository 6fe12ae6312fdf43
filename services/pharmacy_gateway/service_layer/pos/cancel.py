"""2103: a pharmacy settlement cancelled, every part back where it came from, at the payer's home node."""

from __future__ import annotations

from typing import Any

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.exchange import Exchange
from services.pharmacy_gateway.service_layer.pos.common import NODE_ERRORS, answer_by, node_refusal, reversed_note
from shared.contracts.internal_api import PosCancelRequest
from shared.db import ReadView, UnitOfWork


async def cancel(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    code = exchange.institution.fixmedins_code
    try:
        asked = nhsa_inputs.parse_2103(exchange.input)
        setl_id = asked.setl_id
        async with ReadView(ctx.db) as view:
            known = await settlements.settlement(view, setl_id)
        if known is None:
            raise Refused(f"no settlement {setl_id} is known to the gateway")
        if known.fixmedins_code != code:
            raise Refused(f"settlement {setl_id} was made by another institution")
        if known.psn_no != asked.psn_no or known.mdtrt_id != asked.mdtrt_id:
            raise Refused(f"settlement {setl_id} is not of this psn_no and mdtrt_id")
        if known.state == "REVERSED":
            raise Refused(f"settlement {setl_id} was reversed; there is nothing to cancel")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    admdvs = known.payer_admdvs
    instead = await exchange.begin(admdvs, setl_id)
    if instead is not None:
        return instead
    request = PosCancelRequest(msgid=exchange.msgid, setl_id=setl_id, psn_no=asked.psn_no, fixmedins_code=code,
                               answer_by=answer_by(ctx))
    try:
        result = await ctx.nodes.cancel(admdvs, request)
    except NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(node_refusal(admdvs, exc, moves_money=True)))

    async def build(uow: UnitOfWork, row: Any) -> dict[str, Any]:
        if result.payment is not None:
            await settlements.record(ctx, uow, result.payment, institution=exchange.institution,
                                     payer_admdvs=admdvs, msgid=exchange.msgid)
        note = reversed_note(row)
        if note:
            return exchange.refuse(note)
        assert result.payment is not None
        return exchange.answer(nhsa_output.cancel_output(result.payment, result.balances_after))

    return await exchange.finish(build)
