"""Alerts and their review (API.md "Supervision"; ops_console.md §2.3): an operator dismisses an alert, or
decides the transfer it holds: `release` routes it on (credited as usual, with a fresh timeout), `reject` refunds
it (RISK_REJECTED; giver and receiver notified). The decision, the transfer's state change and the messages it
sends are one transaction, guarded by the transfer's state: retried or repeated (another replica, a crash
before the answer), a decision moves the money once. The same Idempotency-Key gets the first answer back
(shared/idempotency.py); another key finds the alert resolved: 409 ALERT_ALREADY_RESOLVED."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters import transfer_repo
from services.national_hub.adapters.ops_tables import AccessLogEntry, RiskAlert
from services.national_hub.domain import transfer_state
from services.national_hub.domain.transfer_state import Review, ReviewDecision, TransferState
from services.national_hub.service_layer import transfers
from services.national_hub.service_layer.context import HubContext
from shared import audit
from shared.clock import iso
from shared.contracts import topics
from shared.contracts.events import PersonNotice, TransferUnderReview
from shared.db import ReadView, UnitOfWork, for_update
from shared.errors import ApiError
from shared.money import yuan_text
from shared.outbox import emit
from shared.tables import table

ALERTS = table(RiskAlert)
ACCESS_LOG = table(AccessLogEntry)
DECISIONS = ("dismiss", "release", "reject")
ALERT_STATES = {"open": "OPEN", "resolved": "RESOLVED"}


@dataclass(frozen=True)
class Decision:
    """`POST /v1/ops/alerts/{id}:resolve` (entrypoints/ops_api.Resolution): what the reviewer decided."""
    decision: str  # dismiss | release | reject (the route's model checks)
    reviewer: str
    note: str = ""


def alert_view(row: Any) -> dict[str, Any]:
    subject = json.loads(row.subject_json) if row.subject_json else {"psn_no": row.subject}
    view: dict[str, Any] = {
        "alert_id": row.alert_id, "rule_id": row.rule, "state": row.state.lower(),
        "created_at": iso(row.created_at), "subject": subject, "detail": json.loads(row.details_json)}
    if row.held_transfer_id:
        view["held_transfer_id"] = row.held_transfer_id
    if row.state == "RESOLVED":
        view |= {"resolved_at": iso(row.resolved_at) if row.resolved_at else None, "decision": row.decision,
                 "reviewer": row.reviewer, "note": row.resolution}
    return view


async def list_alerts(view: ReadView, state: str | None, rule_id: str | None) -> list[dict[str, Any]]:
    query = sa.select(ALERTS).order_by(ALERTS.c.created_at, ALERTS.c.alert_id)
    if state is not None:
        stored = ALERT_STATES.get(state.lower())
        if stored is None:
            raise ApiError(422, "VALIDATION_ERROR", "state is open or resolved")
        query = query.where(ALERTS.c.state == stored)
    if rule_id is not None:
        query = query.where(ALERTS.c.rule == rule_id)
    return [alert_view(row) for row in (await view.execute(query)).all()]


async def log_access(ctx: HubContext, uow: UnitOfWork, reviewer: str | None, action: str, subject_masked: str) -> None:
    await uow.execute(sa.insert(ACCESS_LOG).values(time=ctx.clock.now(), reviewer=reviewer, action=action,
                                                   subject_masked=subject_masked[:64]))


async def resolve(ctx: HubContext, uow: UnitOfWork, alert_id: str, body: Decision | None) -> dict[str, Any]:
    """`body` None: the route could not read a decision from the request; refused after the alert is found (an
    unknown alert is 404 whatever the body)."""
    row = (await uow.execute(for_update(sa.select(ALERTS).where(ALERTS.c.alert_id == alert_id)))).first()
    if row is None:
        raise ApiError(404, "ALERT_NOT_FOUND", "no such alert")
    if body is None:
        raise ApiError(422, "VALIDATION_ERROR", "the body is {decision: dismiss|release|reject, reviewer, note?}")
    if row.state != "OPEN":
        raise ApiError(409, "ALERT_ALREADY_RESOLVED", f"the alert was resolved ({row.decision}) by {row.reviewer}")
    if body.decision != "dismiss" and not row.held_transfer_id:
        raise ApiError(422, "ALERT_HOLDS_NOTHING", f"{body.decision} needs an alert that holds a transfer")
    now = ctx.clock.now()
    if row.held_transfer_id:
        # Dismissing an alert that holds a transfer lets the transfer go: "nothing wrong here" (else the money
        # would stay held with nobody left to decide).
        await _decide(ctx, uow, row.held_transfer_id,
                      ReviewDecision.REJECT if body.decision == "reject" else ReviewDecision.RELEASE)
    changed = await uow.execute(sa.update(ALERTS).where(ALERTS.c.alert_id == alert_id, ALERTS.c.state == "OPEN")
                                .values(state="RESOLVED", resolved_at=now, decision=body.decision,
                                        reviewer=body.reviewer, resolution=body.note or None))
    if changed.rowcount != 1:  # cannot happen under the row lock; a retry reads the winner's decision
        raise ApiError(409, "ALERT_ALREADY_RESOLVED", "the alert was resolved meanwhile")
    await log_access(ctx, uow, body.reviewer, f"alert.{body.decision}", f"{row.rule}:{alert_id}")
    await audit.append(uow, "alert.resolved", alert_id, {"decision": body.decision, "reviewer": body.reviewer,
                                                         "held_transfer_id": row.held_transfer_id})
    resolved = (await uow.execute(sa.select(ALERTS).where(ALERTS.c.alert_id == alert_id))).one()
    return alert_view(resolved)


async def _decide(ctx: HubContext, uow: UnitOfWork, transfer_id: str, decision: ReviewDecision) -> None:
    row = await transfer_repo.locked(uow, transfer_id)
    if row is None:
        return
    review = transfer_state.after_review(row.state, decision)
    if review is None:
        return  # no longer held (decided already): nothing moves twice
    now = ctx.clock.now()
    if review.to_state == TransferState.ROUTED:
        deadline = now + timedelta(seconds=ctx.settings.transfer_timeout_s)
        if not await transfer_repo.move(uow, transfer_id, review, reason=None, routed_at=now, deadline_at=deadline):
            return
        await transfers.record_hop(uow, transfer_id, "REVIEW_RELEASED", ctx.source, now)
        await emit(uow, topics.province_inbound(row.giver_admdvs), transfer_id, TransferUnderReview(
            transfer_id=transfer_id, state=Review.RELEASED.value), source=ctx.source, trace_id=transfer_id)
        await transfers.route(ctx, uow, row, deadline, transfer_id)
        await audit.append(uow, "transfer.state", transfer_id, {"state": review.to_state.value, "by": "review"})
        return
    if not await transfer_repo.move(uow, transfer_id, review, reason=transfer_state.RISK_REJECTED, decided_at=now):
        return
    await transfers.record_hop(uow, transfer_id, "REVIEW_REJECTED", ctx.source, now)
    # The giver's node refunds and tells the giver (its refund notice names the reason); the receiver, who
    # never saw the money, is told here.
    await transfers.close(ctx, uow, transfer_id, transfer_id, row.giver_admdvs, transfer_state.closing(review.to_state),
                          transfer_state.RISK_REJECTED, None)
    await emit(uow, topics.province_inbound(row.receiver_admdvs), row.receiver_psn_no, PersonNotice(
        psn_no=row.receiver_psn_no,
        text=f"您的亲属向您转账{yuan_text(row.amount_fen)}元，经医保基金监管审核未通过，已退回给对方"),
        source=ctx.source, trace_id=transfer_id, message_id=f"notice-{transfer_id}-rejected")
    await audit.append(uow, "transfer.state", transfer_id, {"state": review.to_state.value,
                                                            "reason": transfer_state.RISK_REJECTED})
