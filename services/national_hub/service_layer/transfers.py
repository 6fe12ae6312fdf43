"""Routing of transfers between province nodes, their timeouts, and the obligations clearing will net."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.tables import Binding, ClearingObligation, HubTransfer, TransferHop
from services.national_hub.domain import risk_rules, transfer_state
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
from shared.db import ReadView, UnitOfWork, for_update
from shared.errors import ApiError
from shared.outbox import emit
from shared.tables import table

TRANSFERS = table(HubTransfer)
HOPS = table(TransferHop)
OBLIGATIONS = table(ClearingObligation)
# The registry's table, read here directly: bindings.py calls into this module when a binding ends.
BINDINGS = table(Binding)


# Hot-path statements, built once: their compiled forms are reused for every transfer.
_NEW_HOP = sa.insert(HOPS)
_NEW_TRANSFER = sa.insert(TRANSFERS)
_STATE_BY_ID = sa.select(TRANSFERS.c.state).where(TRANSFERS.c.transfer_id == sa.bindparam("transfer_id"))
# Locked: a result and the timeout scan (on another replica, perhaps) decide one transfer one after another.
_TRANSFER_BY_ID = for_update(sa.select(TRANSFERS).where(TRANSFERS.c.transfer_id == sa.bindparam("transfer_id")))
_BINDING_BY_ID = sa.select(BINDINGS).where(BINDINGS.c.binding_id == sa.bindparam("binding_id"))
_DECIDE = sa.update(TRANSFERS).where(TRANSFERS.c.transfer_id == sa.bindparam("b_transfer_id")).values(
    state=sa.bindparam("b_state"), reason=sa.bindparam("b_reason"), decided_at=sa.bindparam("b_decided_at"))
_NEW_OBLIGATION = sa.insert(OBLIGATIONS)


async def _hop(uow: UnitOfWork, transfer_id: str, hop: str, service: str, at: Any) -> None:
    await uow.execute(_NEW_HOP, {"transfer_id": transfer_id, "hop": hop, "service": service, "at": at})


record_hop = _hop  # for the review decisions (holds.py)


async def on_requested(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: TransferRequested) -> None:
    if (await uow.execute(_STATE_BY_ID, {"transfer_id": msg.transfer_id})).first():
        return
    now = ctx.clock.now()
    await _hop(uow, msg.transfer_id, "ACCEPTED", env.source, msg.accepted_at)
    await _hop(uow, msg.transfer_id, "ROUTING", ctx.source, now)
    binding = (await uow.execute(_BINDING_BY_ID, {"binding_id": msg.binding_id})).first()
    refusal = None
    if binding is None or binding.state != "ACTIVE":
        refusal = "BINDING_NOT_ACTIVE"
    elif (binding.giver_psn_no, binding.relative_psn_no) != (msg.giver_psn_no, msg.receiver_psn_no):
        refusal = "BINDING_MISMATCH"
    deadline = msg.accepted_at + timedelta(seconds=ctx.settings.transfer_timeout_s)
    row = msg.model_dump(exclude={"accepted_at"}) | {"accepted_at": msg.accepted_at, "routed_at": now,
                                                      "deadline_at": deadline}
    if refusal:
        await uow.execute(sa.insert(TRANSFERS).values(state=transfer_state.REFUNDED, reason=refusal,
                                                      decided_at=now, **row))
        await audit.append(uow, "transfer.state", msg.transfer_id, {"state": transfer_state.REFUNDED,
                                                                    "reason": refusal}, now)
        await settle(ctx, uow, env.trace_id, msg.transfer_id, msg.giver_admdvs, "REFUNDED", refusal, None)
        return
    fired = await risk.judge_transfer(ctx, uow, msg, binding)
    held_by = risk_rules.holding_rule(rule for rule, _ in fired)
    if held_by is not None:
        # Issue 12: kept here, before routing, until a reviewer decides (holds.py); the giver sees HELD.
        await uow.execute(_NEW_TRANSFER, {"state": transfer_state.HELD, **row,
                                          "reason": transfer_state.RISK_REVIEW})
        await risk.alert_transfer(ctx, uow, msg, fired, held_by)
        await audit.append(uow, "transfer.state", msg.transfer_id, {"state": transfer_state.HELD,
                                                                    "rule_id": held_by.rule_id}, now)
        await _hop(uow, msg.transfer_id, f"HELD_{held_by.rule_id}", ctx.source, now)
        await emit(uow, topics.province_inbound(msg.giver_admdvs), msg.transfer_id, TransferUnderReview(
            transfer_id=msg.transfer_id, state="HELD", reason=transfer_state.RISK_REVIEW),
            source=ctx.source, trace_id=env.trace_id)
        return
    await uow.execute(_NEW_TRANSFER, {"state": transfer_state.ROUTED, **row})
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": transfer_state.ROUTED,
                                                                "amount_fen": msg.amount_fen}, now)
    if fired:
        await risk.alert_transfer(ctx, uow, msg, fired, None)
    await route(ctx, uow, msg, deadline, env.trace_id)


async def route(ctx: HubContext, uow: UnitOfWork, msg: Any, deadline: Any, trace_id: str) -> None:
    """Send the transfer on to the destination (on arrival, or when a review releases it)."""
    await emit(uow, topics.province_inbound(msg.receiver_admdvs), msg.transfer_id, TransferCredit(
        transfer_id=msg.transfer_id, binding_id=msg.binding_id, giver_psn_no=msg.giver_psn_no,
        giver_admdvs=msg.giver_admdvs, receiver_psn_no=msg.receiver_psn_no, receiver_admdvs=msg.receiver_admdvs,
        amount_fen=msg.amount_fen, accepted_at=msg.accepted_at, credit_by=deadline),
        source=ctx.source, trace_id=trace_id)


async def on_result(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: TransferCreditResult) -> None:
    row = (await uow.execute(_TRANSFER_BY_ID, {"transfer_id": msg.transfer_id})).first()
    if row is None:
        return
    now = ctx.clock.now()
    await _hop(uow, msg.transfer_id, f"DESTINATION_{msg.outcome}", env.source, msg.credited_at or now)
    next_state = transfer_state.after_result(row.state, msg.outcome)
    if next_state is None:
        return  # already decided; a late or repeated answer changes nothing
    await uow.execute(_DECIDE, {"b_transfer_id": msg.transfer_id, "b_state": next_state, "b_reason": msg.reason,
                                "b_decided_at": now})
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": next_state, "reason": msg.reason}, now)
    if next_state == transfer_state.CREDITED and row.giver_admdvs != row.receiver_admdvs:
        await uow.execute(_NEW_OBLIGATION, {
            "kind": "TRANSFER", "ref": msg.transfer_id, "debtor_admdvs": row.giver_admdvs,
            "creditor_admdvs": row.receiver_admdvs, "amount_fen": row.amount_fen, "created_at": now})
    if next_state == transfer_state.CREDITED:
        await ops.on_transfer_credited(ctx, uow, row, msg.credited_at or now)
    outcome = "CREDITED" if next_state == transfer_state.CREDITED else "REFUNDED"
    await settle(ctx, uow, env.trace_id, msg.transfer_id, row.giver_admdvs, outcome, msg.reason, msg.credited_at)


async def settle(ctx: HubContext, uow: UnitOfWork, trace_id: str, transfer_id: str, giver_admdvs: str,
                  outcome: str, reason: str | None, credited_at: Any) -> None:
    await _hop(uow, transfer_id, f"DECIDED_{outcome}", ctx.source, ctx.clock.now())
    await emit(uow, topics.province_inbound(giver_admdvs), transfer_id,
               TransferSettled(transfer_id=transfer_id, outcome=outcome,
                               reason=reason, credited_at=credited_at),
               source=ctx.source, trace_id=trace_id)


async def on_awaiting_acceptance(ctx: HubContext, uow: UnitOfWork, env: Envelope,
                                 msg: TransferAwaitingAcceptance) -> None:
    """The destination holds the transfer until its receiver accepts, at the latest until `accept_by`, when it
    rejects it itself. The hub's timeout waits that long, plus a margin for that rejection to arrive; only a
    destination that stays silent past it gets the cancel. A transfer no longer ROUTED (the timeout or a binding
    end already asked for a cancel) keeps its course: the destination honours that cancel."""
    row = (await uow.execute(sa.select(TRANSFERS.c.state, TRANSFERS.c.deadline_at).where(
        TRANSFERS.c.transfer_id == msg.transfer_id))).first()
    if row is None or row.state != transfer_state.ROUTED:
        return
    deadline = max(row.deadline_at, msg.accept_by + timedelta(seconds=ctx.settings.acceptance_margin_s))
    moved = await uow.execute(sa.update(TRANSFERS).where(TRANSFERS.c.transfer_id == msg.transfer_id,
                                                         TRANSFERS.c.state == transfer_state.ROUTED).values(
        deadline_at=deadline))
    if moved.rowcount == 1:  # a cancel requested meanwhile keeps its course
        await _hop(uow, msg.transfer_id, "AWAITING_ACCEPTANCE", env.source, ctx.clock.now())


async def _request_cancels(ctx: HubContext, uow: UnitOfWork, rows: Any, *, hop: str, reason: str) -> int:
    """Ask the destination to cancel each of these ROUTED transfers. The hub never refunds on its own: the
    destination's answer decides (credited already, or never will be; see transfer_state)."""
    now = ctx.clock.now()
    requested = 0
    for row in rows:
        # Guarded by state: a result decided on another replica since the read keeps its decision.
        changed = await uow.execute(sa.update(TRANSFERS).where(
            TRANSFERS.c.transfer_id == row.transfer_id, TRANSFERS.c.state == transfer_state.ROUTED).values(
            state=transfer_state.CANCEL_REQUESTED))
        if changed.rowcount != 1:
            continue
        requested += 1
        await _hop(uow, row.transfer_id, hop, ctx.source, now)
        await emit(uow, topics.province_inbound(row.receiver_admdvs), row.transfer_id,
                   TransferCancel(transfer_id=row.transfer_id, reason=reason), source=ctx.source,
                   trace_id=row.transfer_id)
    return requested


async def cancel_overdue(ctx: HubContext, uow: UnitOfWork, limit: int = 500) -> int:
    """Timeout: ask the destination to cancel each overdue transfer. One replica scans at a time; rows a
    result is deciding right now are skipped (locked) and looked at again next round."""
    if not await uow.lead("transfer-timeouts"):
        return 0
    rows = (await uow.execute(sa.select(TRANSFERS.c.transfer_id, TRANSFERS.c.receiver_admdvs).where(
        TRANSFERS.c.state == transfer_state.ROUTED, TRANSFERS.c.deadline_at < ctx.clock.now()).limit(limit)
        .with_for_update(skip_locked=True))).all()
    return await _request_cancels(ctx, uow, rows, hop="TIMEOUT_CANCEL_REQUESTED", reason="TIMEOUT")


async def cancel_in_flight_of_binding(ctx: HubContext, uow: UnitOfWork, binding_id: str) -> int:
    """The binding ended (issue 4: ending refunds transfers still in flight): every transfer of it still on
    its way gets the timeout's treatment at once, so it ends refunded unless the destination had credited it
    already. Transfers the hub has not seen yet are refused on arrival (BINDING_NOT_ACTIVE). The state index
    finds the few ROUTED transfers; the binding is matched among them."""
    rows = (await uow.execute(sa.select(TRANSFERS.c.transfer_id, TRANSFERS.c.receiver_admdvs).where(
        TRANSFERS.c.binding_id == binding_id, TRANSFERS.c.state == transfer_state.ROUTED))).all()
    return await _request_cancels(ctx, uow, rows, hop="BINDING_ENDED_CANCEL_REQUESTED", reason="BINDING_ENDED")


async def trace(view: ReadView, transfer_id: str) -> dict[str, Any]:
    row = (await view.execute(sa.select(TRANSFERS).where(TRANSFERS.c.transfer_id == transfer_id))).first()
    if row is None:
        raise ApiError(404, "TRANSFER_NOT_FOUND", "the hub has not seen this transfer")
    hops = (await view.execute(sa.select(HOPS).where(HOPS.c.transfer_id == transfer_id).order_by(HOPS.c.at,
                                                                                                  HOPS.c.id))).all()
    return {"transfer_id": transfer_id, "state": row.state, "reason": row.reason, "amount_fen": row.amount_fen,
            "giver_admdvs": row.giver_admdvs, "receiver_admdvs": row.receiver_admdvs,
            "hops": [{"hop": h.hop, "service": h.service, "at": iso(h.at)} for h in hops]}
