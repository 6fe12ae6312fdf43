"""The gateway's message log around a money message on its way to the payer's node (service_layer/exchange.py):
the answer is stored without reading the PENDING row back, unless a 2601 marked that row reversed meanwhile.
In process: the gateway's real app over a fake payer's node (tests/support/gateway.py)."""

from __future__ import annotations

import sqlalchemy as sa

from launcher.people import new_person
from launcher.pos_client import Item, PosClient
from services.pharmacy_gateway.service_layer.exchange import MESSAGES, read_message
from services.pharmacy_gateway.service_layer.settlements import SETTLEMENTS
from shared.contracts.internal_api import PosPaymentRequest, PosPaymentResult
from shared.db import ReadView, UnitOfWork
from tests.support.gateway import InProcessGateway

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片, drug


async def test_a_settle_answered_without_a_reversal_stores_its_answer_once(gateway: InProcessGateway,
                                                                           till: PosClient) -> None:
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)
    envelope = till.envelope("2102", till.purchase(payer, [Item(DRUG, 1, "10.00")]))
    status, answer = await till.send(envelope)
    assert (status, answer["infcode"]) == (200, 0)
    row = await read_message(gateway.ctx, envelope["msgid"])
    assert (row.state, row.reversed_by) == ("DONE", None)
    assert (await till.send(envelope))[1] == answer  # a repeat: the stored answer


async def test_a_reversal_marked_while_the_node_is_asked_turns_the_answer_into_its_refusal(
        gateway: InProcessGateway, till: PosClient) -> None:
    """A 2601 for this 2102 stored its answer (and marked the 2102's log row) while the node was settling: the
    2102 is answered with a refusal naming the 2601, a repeat gets that same answer, and the settlement the
    node reported is still recorded (the node's word on the money, whatever the till is told)."""
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)
    envelope = till.envelope("2102", till.purchase(payer, [Item(DRUG, 1, "10.00")]))
    reversal_msgid = till.new_msgid()
    settle_at_node = gateway.ctx.nodes.settle

    async def settle_while_reversed(admdvs: str, request: PosPaymentRequest) -> PosPaymentResult:
        result = await settle_at_node(admdvs, request)
        async with UnitOfWork(gateway.ctx.db) as uow:  # what the 2601's answering transaction writes
            await uow.execute(sa.update(MESSAGES).where(MESSAGES.c.msgid == request.msgid)
                              .values(reversed_by=reversal_msgid))
            await uow.commit()
        return result

    gateway.ctx.nodes.settle = settle_while_reversed  # type: ignore[method-assign]
    status, answer = await till.send(envelope)
    assert (status, answer["infcode"]) == (200, -1)
    assert answer["err_msg"] == f"message {envelope['msgid']} was reversed by 2601 {reversal_msgid}"
    row = await read_message(gateway.ctx, envelope["msgid"])
    assert (row.state, row.reversed_by) == ("DONE", reversal_msgid)
    assert (await till.send(envelope))[1] == answer
    payment = gateway.node.settled[envelope["msgid"]].payment
    assert payment is not None
    async with ReadView(gateway.ctx.db) as view:
        recorded = (await view.execute(sa.select(SETTLEMENTS.c.state)
                                       .where(SETTLEMENTS.c.setl_id == payment.setl_id))).scalars().all()
    assert recorded == ["SETTLED"]
