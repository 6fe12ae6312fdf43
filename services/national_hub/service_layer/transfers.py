"""Routing of transfers between province nodes, their timeouts, and the obligations clearing will net. The states
and the rules that move them are domain/transfer_state.py; the rows adapters/transfer_repo.py. When a transfer
reaches CREDITED or REFUNDED the hub *closes* it: the giver's node is told (`TransferSettled`, its wire name)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from services.national_hub.adapters import transfer_repo
from services.national_hub.adapters.transfer_repo import OBLIGATIONS as OBLIGATIONS  # read by tests
from services.national_hub.adapters.transfer_repo import TRANSFERS as TRANSFERS  # read by tests
from services.national_hub.adapters.transfer_repo import CancelTarget, HubTransferRow
from services.national_hub.domain import binding_lifecycle, risk_rules, transfer_state
from services.national_hub.domain.transfer_state import CancelCause, Closing, DestinationAnswer, Review, TransferState
from services.national_hub.service_layer import ops, risk
from services.national_hub.service_layer.context import HubContext
from shared import audit
from shared.clock import iso
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    TransferAwaitingAcceptance,
    TransferCancel,
    TransferCredit,
    TransferCreditResult,
    TransferRequested,
    TransferSettled,
    TransferUnderReview,
)
from shared.db import ReadView, UnitOfWork
from shared.errors import ApiError
from shared.outbox import emit


async def _hop(uow: UnitOfWork, transfer_id: str, hop: str, service: str, at: datetime) -> None:
    await transfer_repo.add_hop(uow, transfer_id, hop, service, at)


record_hop = _hop  # for the review decisions (holds.py)


async def on_requested(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: TransferRequested) -> None:
    rules = await risk.rule_settings(ctx, uow)
    facts = await transfer_repo.arrival_facts(
        uow, transfer_id=msg.transfer_id, binding_id=msg.binding_id, giver_psn_no=msg.giver_psn_no,
        receiver_psn_no=msg.receiver_psn_no, since=risk.transfer_count_since(rules, msg.accepted_at),
        until=msg.accepted_at)
    if facts.known_state is not None:
        return
    now = ctx.clock.now()
    await _hop(uow, msg.transfer_id, "ACCEPTED", env.source, msg.accepted_at)
    await _hop(uow, msg.transfer_id, "ROUTING", ctx.source, now)
    binding = facts.binding
    refusal = transfer_state.arrival_refusal(
        binding_active=binding is not None and binding.state == binding_lifecycle.BindingState.ACTIVE,
        binding_parties=None if binding is None else (binding.giver_psn_no, binding.relative_psn_no),
        transfer_parties=(msg.giver_psn_no, msg.receiver_psn_no))
    deadline = msg.accepted_at + timedelta(seconds=ctx.settings.transfer_timeout_s)
    if refusal is not None:
        state = transfer_state.on_arrival(refusal, held=False)
        await transfer_repo.add(uow, _row(msg, state, refusal, now, deadline, decided_at=now))
        await audit.append(uow, "transfer.state", msg.transfer_id, {"state": state.value, "reason": refusal}, now)
        await close(ctx, uow, env.trace_id, msg.transfer_id, msg.giver_admdvs, transfer_state.closing(state),
                    refusal, None)
        return
    assert binding is not None
    fired = risk.judge_transfer(rules, msg, binding, facts)
    held_by = risk_rules.holding_rule(rule for rule, _ in fired)
    state = transfer_state.on_arrival(None, held=held_by is not None)
    if held_by is not None:
        # Issue 12: kept here, before routing, until a reviewer decides (holds.py); the giver sees HELD.
        await transfer_repo.add(uow, _row(msg, state, transfer_state.RISK_REVIEW, now, deadline))
        await risk.alert_transfer(ctx, uow, msg, fired, held_by)
        await audit.append(uow, "transfer.state", msg.transfer_id, {"state": state.value,
                                                                    "rule_id": held_by.rule_id}, now)
        await _hop(uow, msg.transfer_id, f"HELD_{held_by.rule_id}", ctx.source, now)
        await emit(uow, topics.province_inbound(msg.giver_admdvs), msg.transfer_id, TransferUnderReview(
            transfer_id=msg.transfer_id, state=Review.HELD.value, reason=transfer_state.RISK_REVIEW),
            source=ctx.source, trace_id=env.trace_id)
        return
    await transfer_repo.add(uow, _row(msg, state, None, now, deadline))
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": state.value,
                                                                "amount_fen": msg.amount_fen}, now)
    if fired:
        await risk.alert_transfer(ctx, uow, msg, fired, None)
    await route(ctx, uow, msg, deadline, env.trace_id)


def _row(msg: TransferRequested, state: TransferState, reason: str | None, now: datetime, deadline: datetime,
         decided_at: datetime | None = None) -> HubTransferRow:
    return HubTransferRow(
        transfer_id=msg.transfer_id, binding_id=msg.binding_id, giver_psn_no=msg.giver_psn_no,
        giver_admdvs=msg.giver_admdvs, receiver_psn_no=msg.receiver_psn_no, receiver_admdvs=msg.receiver_admdvs,
        amount_fen=msg.amount_fen, state=state, reason=reason, accepted_at=msg.accepted_at, routed_at=now,
        deadline_at=deadline, decided_at=decided_at)


def receiver_key(receiver_psn_no: str) -> str:
    """The Kafka key of what the destination does to the receiver's wallet (a credit, its cancel): one partition
    per person, so one consumer (one replica) at a time credits a wallet, in order. Keyed by transfer, two
    replicas' consumer batches credited the same wallets at once and queued on their row locks until each other's
    commit (issue 9, 2 replicas: 17 ms of lock wait per credit, credits fell behind accepts by 30 s). A credit and
    its cancel still share a key, so the cancel never overtakes the credit."""
    return receiver_psn_no


async def route(ctx: HubContext, uow: UnitOfWork, transfer: TransferRequested | HubTransferRow, deadline: datetime,
                trace_id: str) -> None:
    """Send the transfer on to the destination (on arrival, or when a review releases it), keyed by the receiver
    (`receiver_key`)."""
    credit = TransferCredit(
        transfer_id=transfer.transfer_id, binding_id=transfer.binding_id, giver_psn_no=transfer.giver_psn_no,
        giver_admdvs=transfer.giver_admdvs, receiver_psn_no=transfer.receiver_psn_no,
        receiver_admdvs=transfer.receiver_admdvs, amount_fen=transfer.amount_fen, accepted_at=transfer.accepted_at,
        credit_by=deadline)
    await emit(uow, topics.province_inbound(transfer.receiver_admdvs), receiver_key(transfer.receiver_psn_no), credit,
               source=ctx.source, trace_id=trace_id)


async def on_result(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: TransferCreditResult) -> None:
    row = await transfer_repo.locked(uow, msg.transfer_id)
    if row is None:
        return
    now = ctx.clock.now()
    await _hop(uow, msg.transfer_id, f"DESTINATION_{msg.outcome}", env.source, msg.credited_at or now)
    next_state = transfer_state.after_result(row.state, DestinationAnswer(msg.outcome))
    if next_state is None:
        return  # already decided; a late or repeated answer changes nothing
    await transfer_repo.decide(uow, msg.transfer_id, next_state, msg.reason, now)
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": next_state.value, "reason": msg.reason}, now)
    if transfer_state.owes(next_state, row.giver_admdvs, row.receiver_admdvs):
        await transfer_repo.add_obligation(uow, row, now)
    if next_state == TransferState.CREDITED:
        await ops.on_transfer_credited(ctx, uow, row, msg.credited_at or now)
    await close(ctx, uow, env.trace_id, msg.transfer_id, row.giver_admdvs, transfer_state.closing(next_state),
                msg.reason, msg.credited_at)


async def close(ctx: HubContext, uow: UnitOfWork, trace_id: str, transfer_id: str, giver_admdvs: str,
                closing: Closing, reason: str | None, credited_at: datetime | None) -> None:
    """Transfer close: the hub's decision goes to the giver's node, which moves the money in flight on
    (CREDITED) or back to the giver (REFUNDED)."""
    await _hop(uow, transfer_id, f"DECIDED_{closing.value}", ctx.source, ctx.clock.now())
    await emit(uow, topics.province_inbound(giver_admdvs), transfer_id,
               TransferSettled(transfer_id=transfer_id, outcome=closing.value,
                               reason=reason, credited_at=credited_at),
               source=ctx.source, trace_id=trace_id)


async def on_awaiting_acceptance(ctx: HubContext, uow: UnitOfWork, env: Envelope,
                                 msg: TransferAwaitingAcceptance) -> None:
    """The destination holds the transfer until its receiver accepts, at the latest until `accept_by`, when it
    rejects it itself. The hub's timeout waits that long, plus a margin for that rejection to arrive; only a
    destination that stays silent past it gets the cancel. A transfer no longer ROUTED (the timeout or a binding
    end already asked for a cancel) keeps its course: the destination honours that cancel."""
    found = await transfer_repo.state_and_deadline(uow, msg.transfer_id)
    if found is None or not transfer_state.waits_for_acceptance(found[0]):
        return
    deadline = transfer_state.deadline_while_awaiting(found[1], msg.accept_by,
                                                      timedelta(seconds=ctx.settings.acceptance_margin_s))
    # Guarded by state: a cancel requested meanwhile keeps its course.
    if await transfer_repo.move_deadline(uow, msg.transfer_id, while_in=TransferState.ROUTED, deadline_at=deadline):
        await _hop(uow, msg.transfer_id, "AWAITING_ACCEPTANCE", env.source, ctx.clock.now())


async def _request_cancels(ctx: HubContext, uow: UnitOfWork, rows: list[CancelTarget], *, hop: str,
                           reason: CancelCause) -> int:
    """Ask the destination to cancel each of these ROUTED transfers. The hub never refunds on its own: the
    destination's answer decides (credited already, or never will be; see transfer_state)."""
    now = ctx.clock.now()
    requested = 0
    for row in rows:
        # Guarded by state: a result decided on another replica since the read keeps its decision.
        if not await transfer_repo.move(uow, row.transfer_id, transfer_state.CANCEL_MOVE):
            continue
        requested += 1
        await _hop(uow, row.transfer_id, hop, ctx.source, now)
        await emit(uow, topics.province_inbound(row.receiver_admdvs), receiver_key(row.receiver_psn_no),
                   TransferCancel(transfer_id=row.transfer_id, reason=reason.value), source=ctx.source,
                   trace_id=row.transfer_id)
    return requested


async def cancel_overdue(ctx: HubContext, uow: UnitOfWork, limit: int = 500) -> int:
    """Timeout: ask the destination to cancel each overdue transfer. One replica scans at a time; rows a
    result is deciding right now are skipped (locked) and looked at again next round."""
    if not await uow.lead("transfer-timeouts"):
        return 0
    rows = await transfer_repo.overdue(uow, ctx.clock.now(), limit)
    return await _request_cancels(ctx, uow, rows, hop="TIMEOUT_CANCEL_REQUESTED", reason=CancelCause.TIMEOUT)


async def cancel_in_flight_of_binding(ctx: HubContext, uow: UnitOfWork, binding_id: str) -> int:
    """The binding ended (ending refunds transfers still in flight): every transfer of it still on its way gets
    the timeout's treatment at once, so it ends refunded unless the destination had credited it already.
    Transfers the hub has not seen yet are refused on arrival (BINDING_NOT_ACTIVE)."""
    rows = await transfer_repo.routed_of_binding(uow, binding_id)
    return await _request_cancels(ctx, uow, rows, hop="BINDING_ENDED_CANCEL_REQUESTED",
                                  reason=CancelCause.BINDING_ENDED)


async def trace(view: ReadView, transfer_id: str) -> dict[str, Any]:
    row = await transfer_repo.by_id(view, transfer_id)
    if row is None:
        raise ApiError(404, "TRANSFER_NOT_FOUND", "the hub has not seen this transfer")
    hops = await transfer_repo.hops(view, transfer_id)
    return {"transfer_id": transfer_id, "state": row.state.value, "reason": row.reason, "amount_fen": row.amount_fen,
            "giver_admdvs": row.giver_admdvs, "receiver_admdvs": row.receiver_admdvs,
            "hops": [{"hop": h.hop, "service": h.service, "at": iso(h.at)} for h in hops]}
