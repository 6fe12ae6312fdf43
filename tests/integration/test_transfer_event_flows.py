"""Kafka messages between the services' real code, in process (DESIGN.md "Habits": contracts).

What the producers' real code writes to their outbox is accepted by the consumers' schemas and handlers (each
message is also checked against its golden sample: tests/support/wire.py `consumer_accepts`): node -> hub ->
node -> hub -> node for a transfer, hub -> nodes for bindings. This is an in-process run of the whole transfer
state machine (credited once or refunded once) on real migrated databases. The samples' own checks are in
tests/contract/test_event_contracts.py."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from services.national_hub.service_layer import transfers as hub_transfers
from services.province_node.domain import ledger
from services.province_node.service_layer import bindings as node_bindings
from services.province_node.service_layer import transfers as node_transfers
from shared.contracts import topics
from shared.contracts.events import (
    BindingChanged,
    TransferCancel,
    TransferCredit,
    TransferCreditResult,
    TransferRequested,
    TransferSettled,
)
from shared.db import UnitOfWork
from tests.support.inprocess import DESTINATION, SOURCE, TRANSFER_TIMEOUT_S, InProcessFederation
from tests.support.stories import (
    GIVER_PA_FEN,
    active_binding,
    assert_money_conserved,
    balance_fen,
    end_binding,
    family,
    import_kinship,
    import_person,
    open_wallet,
    send_transfer,
    transfer_out_state,
)
from tests.support.wire import Wired, consumer_accepts

AMOUNT_FEN = 50_000


# ------------------------------------------------------------------------------------------ (b) producers


def _only(messages: list[Wired], event_type: str) -> Wired:
    matching = [m for m in messages if m.type == event_type]
    assert len(matching) == 1, f"expected one {event_type}, got {[m.type for m in messages]}"
    return matching[0]


async def test_binding_changes_from_the_hub_reach_both_nodes(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await end_binding(fed, giver, binding_id)
    await fed.pump()

    changes = [m for m in fed.delivered if m.type == BindingChanged.TYPE]
    seen = {(m.topic, consumer_accepts(m).model_dump()["binding"]["version"]) for m in changes}
    assert seen == {(topics.province_inbound(p), v) for p in (SOURCE, DESTINATION) for v in (1, 2, 3)}
    assert {m.envelope.source for m in changes} == {"hub"}
    for admdvs in (SOURCE, DESTINATION):
        async with UnitOfWork(fed.node(admdvs).db) as uow:
            row = (await uow.execute(sa.select(node_bindings.BINDINGS).where(
                node_bindings.BINDINGS.c.binding_id == binding_id))).one()
        assert (row.state, row.version, row.ended_reason) == ("ENDED", 3, "UNBOUND")
        assert (row.giver_psn_no, row.relative_psn_no) == (giver.psn_no, mother.psn_no)


async def test_cross_province_transfer_step_by_step(fed: InProcessFederation) -> None:
    """Each producer's real use case, each consumer's real handler, one hop at a time."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    source, destination, hub = fed.node(SOURCE), fed.node(DESTINATION), fed.hub

    # 1. Giver's node accepts: PA -> in flight, transfer row and outbox in one transaction.
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    [requested] = await fed.take_outbox(source.db)
    assert (requested.topic, requested.key, requested.envelope.source) == (topics.HUB_INBOUND, transfer_id,
                                                                          "node-640000")
    request = consumer_accepts(requested)
    assert isinstance(request, TransferRequested)
    assert (request.binding_id, request.giver_psn_no, request.receiver_psn_no, request.amount_fen) == (
        binding_id, giver.psn_no, mother.psn_no, AMOUNT_FEN)
    assert (request.giver_admdvs, request.receiver_admdvs, request.accepted_at) == (SOURCE, DESTINATION,
                                                                                    fed.clock.now())
    assert await balance_fen(fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN - AMOUNT_FEN
    assert await balance_fen(fed, SOURCE, ledger.IN_FLIGHT) == AMOUNT_FEN

    # 2. Hub routes it to the receiver's province, with the deadline of its timeout.
    fed.clock.advance(0.015)
    async with UnitOfWork(hub.db) as uow:
        await hub_transfers.on_requested(hub, uow, requested.envelope, request)
        await uow.commit()
    [credit_msg] = await fed.take_outbox(hub.db)
    # Keyed by the receiver: one consumer at a time credits a wallet (hub transfers.receiver_key).
    assert (credit_msg.topic, credit_msg.key) == (topics.province_inbound(DESTINATION), mother.psn_no)
    credit = consumer_accepts(credit_msg)
    assert isinstance(credit, TransferCredit)
    assert credit.credit_by == request.accepted_at + timedelta(seconds=TRANSFER_TIMEOUT_S)
    assert credit.model_dump(exclude={"credit_by"}) == request.model_dump()
    assert credit_msg.envelope.trace_id == requested.envelope.trace_id

    # 3. Receiver's node credits the wallet and answers the hub.
    fed.clock.advance(0.040)
    async with UnitOfWork(destination.db) as uow:
        await node_transfers.on_credit(destination, uow, credit_msg.envelope, credit)
        await uow.commit()
    [result_msg] = await fed.take_outbox(destination.db)
    assert (result_msg.topic, result_msg.key, result_msg.envelope.source) == (topics.HUB_INBOUND, transfer_id,
                                                                             "node-620000")
    result = consumer_accepts(result_msg)
    assert isinstance(result, TransferCreditResult)
    assert (result.outcome, result.reason, result.credited_at) == ("CREDITED", None, fed.clock.now())
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN

    # 4. Hub decides: credited; the giver's province owes the receiver's.
    async with UnitOfWork(hub.db) as uow:
        await hub_transfers.on_result(hub, uow, result_msg.envelope, result)
        await uow.commit()
    [settled_msg] = await fed.take_outbox(hub.db)
    assert (settled_msg.topic, settled_msg.key) == (topics.province_inbound(SOURCE), transfer_id)
    settled = consumer_accepts(settled_msg)
    assert isinstance(settled, TransferSettled)
    assert (settled.outcome, settled.reason, settled.credited_at) == ("CREDITED", None, result.credited_at)
    async with UnitOfWork(hub.db) as uow:
        state = (await uow.execute(sa.select(hub_transfers.TRANSFERS.c.state).where(
            hub_transfers.TRANSFERS.c.transfer_id == transfer_id))).scalar_one()
        owed = (await uow.execute(sa.select(hub_transfers.OBLIGATIONS))).one()
    assert state == "CREDITED"
    assert (owed.debtor_admdvs, owed.creditor_admdvs, owed.amount_fen, owed.ref) == (
        SOURCE, DESTINATION, AMOUNT_FEN, transfer_id)

    # 5. Giver's node closes the transfer: in flight -> clearing.
    async with UnitOfWork(source.db) as uow:
        await node_transfers.on_closed(source, uow, settled)
        await uow.commit()
    assert await fed.take_all() == []
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_transfer_through_consumer_handlers_with_newer_producers(fed: InProcessFederation) -> None:
    """The same flow through the consumers' batch handlers, every message carrying fields they do not know."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    moved = await fed.pump(unknown_fields=True)
    assert [m.type for m in moved] == [TransferRequested.TYPE, TransferCredit.TYPE, TransferCreditResult.TYPE,
                                       TransferSettled.TYPE]
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_rejected_credit_is_refunded(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)  # the mother never opened her wallet
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    moved = await fed.pump()
    result = consumer_accepts(_only(moved, TransferCreditResult.TYPE))
    settled = consumer_accepts(_only(moved, TransferSettled.TYPE))
    assert result.model_dump(include={"outcome", "reason"}) == {"outcome": "REJECTED", "reason": "WALLET_NOT_OPEN"}
    assert settled.model_dump(include={"outcome", "reason", "credited_at"}) == {
        "outcome": "REFUNDED", "reason": "WALLET_NOT_OPEN", "credited_at": None}
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await balance_fen(fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_timeout_before_credit_refunds_and_a_late_credit_is_refused(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    await fed.deliver(await fed.take_outbox(fed.node(SOURCE).db))  # the hub routes it...
    [late_credit] = await fed.take_outbox(fed.hub.db)  # ...but the receiver's node is down

    fed.clock.advance(TRANSFER_TIMEOUT_S + 1)
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 1
        await uow.commit()
    [cancel_msg] = await fed.take_outbox(fed.hub.db)
    cancel = consumer_accepts(cancel_msg)
    assert (cancel_msg.topic, cancel) == (topics.province_inbound(DESTINATION),
                                          TransferCancel(transfer_id=transfer_id, reason="TIMEOUT"))
    # The node comes back and reads its partition in order: the credit (too late), then the cancel.
    await fed.deliver([late_credit, cancel_msg])
    moved = await fed.pump()
    results = [consumer_accepts(m) for m in moved if m.type == TransferCreditResult.TYPE]
    assert {r.model_dump()["outcome"] for r in results} == {"REJECTED"}
    settled = consumer_accepts(_only(moved, TransferSettled.TYPE))
    assert settled.model_dump()["outcome"] == "REFUNDED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_timeout_after_credit_keeps_the_credit(fed: InProcessFederation) -> None:
    """The credit happened but its result was slow: the cancel is answered CREDITED, never refunded."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    await fed.deliver(await fed.take_outbox(fed.node(SOURCE).db))
    await fed.deliver(await fed.take_outbox(fed.hub.db))  # credited at the destination
    [slow_result] = await fed.take_outbox(fed.node(DESTINATION).db)  # its answer is delayed

    fed.clock.advance(TRANSFER_TIMEOUT_S + 1)
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 1
        await uow.commit()
    await fed.deliver(await fed.take_outbox(fed.hub.db))  # the cancel
    [answer] = await fed.take_outbox(fed.node(DESTINATION).db)
    assert consumer_accepts(answer).model_dump(include={"outcome", "credited_at"}) == consumer_accepts(
        slow_result).model_dump(include={"outcome", "credited_at"})
    await fed.deliver([answer, slow_result])  # both answers reach the hub; the first decides
    moved = await fed.pump()
    settled = consumer_accepts(_only(moved, TransferSettled.TYPE))
    assert settled.model_dump()["outcome"] == "CREDITED"
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_redelivered_and_repeated_messages_change_nothing(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    moved = await fed.pump(twice=True)  # same message ids again: the inbox drops them
    assert len(moved) == 4
    # The same messages under new ids (past the inbox): every handler must still apply each at most once.
    for wired in moved:
        repeated = Wired(wired.topic, wired.key, wired.envelope.model_copy(update={"id": wired.envelope.id + "r"}))
        await fed.deliver([repeated])
    assert await fed.take_all() == []
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    async with UnitOfWork(fed.hub.db) as uow:
        obligations = (await uow.execute(sa.select(sa.func.count()).select_from(hub_transfers.OBLIGATIONS))).scalar()
    assert obligations == 1
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_same_province_transfer(fed: InProcessFederation) -> None:
    giver, _ = await family(fed)
    husband = await import_person(fed, SOURCE, "64010219830511003", "张伟", insutype="310")
    await import_kinship(fed, giver, husband, "spouse")
    binding_id = await active_binding(fed, giver, husband, "spouse")
    await open_wallet(fed, husband)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    moved = await fed.pump()
    credit = _only(moved, TransferCredit.TYPE)
    assert credit.topic == topics.province_inbound(SOURCE)
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, SOURCE, ledger.wallet_account(husband.psn_no)) == AMOUNT_FEN
    async with UnitOfWork(fed.hub.db) as uow:
        assert (await uow.execute(sa.select(hub_transfers.OBLIGATIONS))).first() is None  # nothing to clear
    await assert_money_conserved(fed, GIVER_PA_FEN)
