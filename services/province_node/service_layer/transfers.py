"""Transfers, the heart of mutual aid (DESIGN.md "Flow of a cross-province transfer").

Source side: accept in one transaction (checks, PA -> IN_FLIGHT, transfer row, outbox), settle when the hub
says (IN_FLIGHT -> CLEARING, or back to the PA). Destination side: credit once (CLEARING -> WALLET) unless the
deadline passed or the hub cancelled first; every answer goes back to the hub through the outbox.

Where receivers must accept (config: YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES), the destination holds an arriving
transfer as AWAITING_ACCEPTANCE instead of crediting it, and tells the hub until when (accept_by, next 06:00).
Then exactly one of three ends it, whichever locks the held row first (`FOR UPDATE`, across replicas too): the
receiver accepts
(credited by the same code as an immediate credit), accept_by passes (the expiry scan rejects it,
NOT_ACCEPTED), or the hub cancels (binding ended, or the hub's own deadline passed). The held row is the one
place each of them reads and changes, so a cancelled or expired transfer can never be accepted afterwards."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.tables import TransferIn, TransferOut
from services.province_node.domain import ledger, notices
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.domain.transfer_rules import accept_by, check_transfer, shanghai_day
from services.province_node.service_layer.bindings import BINDINGS, binding_for_giver, notify
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS
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
from shared.outbox import emit
from shared.tokens import Claims

OUT = TransferOut.__table__  # type: ignore[attr-defined]
IN = TransferIn.__table__  # type: ignore[attr-defined]
AWAITING = "AWAITING_ACCEPTANCE"
HELD = "HELD"  # issue 12: held at the hub for a risk review; the money stays in flight
IN_FLIGHT_STATES = ("ACCEPTED", HELD)


def parse_amount_fen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DomainError("INVALID_AMOUNT", "amount_fen must be a positive whole number of fen")
    return value


# The accept path's statements, built once (their compiled forms are reused on every transfer).
_INSURED = sa.select(PERSONS.c.insured).where(PERSONS.c.psn_no == sa.bindparam("psn_no"))
_SENT_TODAY = sa.select(sa.func.count()).select_from(OUT).where(
    OUT.c.giver_psn_no == sa.bindparam("giver"), OUT.c.accepted_day == sa.bindparam("day"))
_NEW_OUT = sa.insert(OUT)
_OUT_BY_ID = for_update(sa.select(OUT).where(OUT.c.transfer_id == sa.bindparam("transfer_id")))
_IN_STATE = sa.select(IN.c.state).where(IN.c.transfer_id == sa.bindparam("transfer_id"))
_NEW_IN = sa.insert(IN)
_BINDING_STATE = sa.select(BINDINGS.c.state).where(BINDINGS.c.binding_id == sa.bindparam("binding_id"))


async def send_transfer(ctx: NodeContext, uow: UnitOfWork, claims: Claims, binding_id: Any,
                        amount: Any) -> tuple[int, Any]:
    if not isinstance(binding_id, str) or not binding_id:
        raise DomainError("VALIDATION_ERROR", "binding_id is required")
    amount_fen = parse_amount_fen(amount)
    now = ctx.clock.now()
    if not claims.has_face_step_up(now.timestamp()):
        raise Forbidden("STEP_UP_REQUIRED", "a transfer needs a face verification in the last 5 minutes")
    binding = await binding_for_giver(uow, binding_id, claims.psn_no)
    if binding.state != "ACTIVE":
        raise DomainError("BINDING_NOT_ACTIVE", f"the binding is {binding.state}")
    insured = (await uow.execute(_INSURED, {"psn_no": claims.psn_no})).scalar()
    if not insured:
        # Bindings end with the insurance (person_status.py): refused at once, before the hub's BindingChanged.
        raise DomainError("BINDING_NOT_ACTIVE", "the giver's insurance has ended, and every binding with it")
    pa = ledger.personal_account(claims.psn_no)
    # The giver's account row, locked first: two sends of one giver (two replicas) count today's transfers
    # and check the balance one after the other, so the daily limit holds.
    await ledger_repo.lock_accounts(uow, [pa])
    day = shanghai_day(now)
    sent_today = (await uow.execute(_SENT_TODAY, {"giver": claims.psn_no, "day": day})).scalar_one()
    check_transfer(ctx.policy, amount_fen=amount_fen, now=now, sent_today=int(sent_today),
                   balance_fen=await ledger_repo.balance(uow, pa) or 0)
    transfer_id = "T" + uuid.uuid4().hex
    await ledger_repo.post(uow, ledger.move("TRANSFER_HOLD", transfer_id, pa, ledger.IN_FLIGHT, amount_fen), now)
    await uow.execute(_NEW_OUT, {
        "transfer_id": transfer_id, "binding_id": binding_id, "giver_psn_no": claims.psn_no,
        "receiver_psn_no": binding.relative_psn_no, "receiver_admdvs": binding.relative_admdvs,
        "amount_fen": amount_fen, "state": "ACCEPTED", "accepted_day": day, "accepted_at": now})
    await emit(uow, topics.HUB_INBOUND, transfer_id, TransferRequested(
        transfer_id=transfer_id, binding_id=binding_id, giver_psn_no=claims.psn_no, giver_admdvs=ctx.admdvs,
        receiver_psn_no=binding.relative_psn_no, receiver_admdvs=binding.relative_admdvs, amount_fen=amount_fen,
        accepted_at=now), source=ctx.source, trace_id=transfer_id)
    return 202, {"transfer_id": transfer_id, "state": "ACCEPTED", "amount_fen": amount_fen,
                 "binding_id": binding_id, "accepted_at": iso(now)}


async def on_credit(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCredit) -> None:
    if (await uow.execute(_IN_STATE, {"transfer_id": msg.transfer_id})).first():
        return  # already decided (credited, rejected or cancelled): the first decision stands
    now = ctx.clock.now()
    reason = await _credit_refusal(ctx, uow, msg, now)
    row = {"transfer_id": msg.transfer_id, "binding_id": msg.binding_id, "giver_psn_no": msg.giver_psn_no,
           "giver_admdvs": msg.giver_admdvs, "receiver_psn_no": msg.receiver_psn_no, "amount_fen": msg.amount_fen,
           "accepted_at": msg.accepted_at}
    if reason:
        await uow.execute(_NEW_IN, {"state": "REJECTED", "reason": reason, **row})
        await _answer(ctx, uow, TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=reason),
                      env.trace_id)
    elif ctx.settings.receivers_must_accept:
        deadline = accept_by(now, ctx.settings.accept_by_time)
        await uow.execute(sa.insert(IN).values(state=AWAITING, accept_by=deadline, **row))
        await notify(uow, ctx, msg.receiver_psn_no, notices.transfer_awaiting_acceptance(msg.amount_fen, deadline))
        await emit(uow, topics.HUB_INBOUND, msg.transfer_id,
                   TransferAwaitingAcceptance(transfer_id=msg.transfer_id, accept_by=deadline),
                   source=ctx.source, trace_id=env.trace_id)
    else:
        await uow.execute(_NEW_IN, {"state": "CREDITED", "credited_at": now, **row})
        await _credit(ctx, uow, msg.transfer_id, msg.receiver_psn_no, msg.amount_fen, now, env.trace_id)


async def _credit(ctx: NodeContext, uow: UnitOfWork, transfer_id: str, receiver_psn_no: str, amount_fen: int,
                  now: Any, trace_id: str) -> None:
    """The credit itself, on arrival or when the receiver accepts: CLEARING -> wallet, the receiver's notice,
    the CREDITED answer to the hub. The caller has marked the transfers_in row CREDITED."""
    await ledger_repo.post(uow, ledger.move("TRANSFER_CREDIT", transfer_id, ledger.CLEARING,
                                            ledger.wallet_account(receiver_psn_no), amount_fen), now)
    await notify(uow, ctx, receiver_psn_no, notices.transfer_received(amount_fen))
    await _answer(ctx, uow, TransferCreditResult(transfer_id=transfer_id, outcome="CREDITED", credited_at=now),
                  trace_id)


async def _answer(ctx: NodeContext, uow: UnitOfWork, result: TransferCreditResult, trace_id: str) -> None:
    await emit(uow, topics.HUB_INBOUND, result.transfer_id, result, source=ctx.source, trace_id=trace_id)


async def _binding_ended(uow: UnitOfWork, binding_id: str) -> bool:
    """This node already knows the binding ended: a transfer on it is refused, not credited (the hub's cancel
    for it is on its way, and ending a binding refunds what is in flight on it)."""
    state = (await uow.execute(_BINDING_STATE, {"binding_id": binding_id})).scalar()
    return bool(state == "ENDED")


async def _credit_refusal(ctx: NodeContext, uow: UnitOfWork, msg: TransferCredit, now: Any) -> str | None:
    if now > msg.credit_by:
        return "EXPIRED"
    person = (await uow.execute(_INSURED, {"psn_no": msg.receiver_psn_no})).first()
    if person is None:
        return "RECEIVER_UNKNOWN"
    if not person.insured:
        return "RECEIVER_NOT_INSURED"
    if await ledger_repo.balance(uow, ledger.wallet_account(msg.receiver_psn_no)) is None:
        return "WALLET_NOT_OPEN"
    if await _binding_ended(uow, msg.binding_id):
        return "BINDING_NOT_ACTIVE"
    return None


async def accept_transfer(ctx: NodeContext, uow: UnitOfWork, claims: Claims, transfer_id: str) -> tuple[int, Any]:
    """`POST /v1/transfers/{id}:accept`, the receiver at their own node. No face step-up: accepting only lets
    money in, into the receiver's own wallet (the giver's face verification guarded the money leaving)."""
    row = (await uow.execute(for_update(sa.select(IN).where(IN.c.transfer_id == transfer_id,
                                                            IN.c.receiver_psn_no == claims.psn_no)))).first()
    if row is None:
        raise NotFound("TRANSFER_NOT_FOUND", "no such transfer for this person")
    if row.state == "CREDITED":
        return 200, _in_view(row)  # accepting twice is harmless
    if row.state != AWAITING:
        raise DomainError("TRANSFER_NOT_AWAITING_ACCEPTANCE", f"the transfer is {row.state}")
    now = ctx.clock.now()
    if now >= row.accept_by:
        raise DomainError("ACCEPTANCE_EXPIRED", "the time to accept has passed; the transfer returns to the giver")
    if await _binding_ended(uow, row.binding_id):
        raise DomainError("BINDING_NOT_ACTIVE", "the binding has ended; the transfer returns to the giver")
    await uow.execute(sa.update(IN).where(IN.c.transfer_id == transfer_id).values(state="CREDITED",
                                                                                   credited_at=now))
    await _credit(ctx, uow, transfer_id, row.receiver_psn_no, row.amount_fen, now, transfer_id)
    credited = (await uow.execute(sa.select(IN).where(IN.c.transfer_id == transfer_id))).one()
    return 200, _in_view(credited)


async def reject_unaccepted(ctx: NodeContext, uow: UnitOfWork, limit: int = 500) -> int:
    """Held transfers whose accept_by has passed go back to the giver: REJECTED (NOT_ACCEPTED) here, so the
    receiver can no longer accept them, and that answer to the hub, which refunds."""
    if not await uow.lead("transfer-acceptance"):
        return 0
    now = ctx.clock.now()
    rows = (await uow.execute(sa.select(IN.c.transfer_id).where(IN.c.state == AWAITING, IN.c.accept_by <= now)
                              .limit(limit).with_for_update(skip_locked=True))).all()
    for row in rows:
        await uow.execute(sa.update(IN).where(IN.c.transfer_id == row.transfer_id).values(
            state="REJECTED", reason="NOT_ACCEPTED"))
        await _answer(ctx, uow, TransferCreditResult(transfer_id=row.transfer_id, outcome="REJECTED",
                                                     reason="NOT_ACCEPTED"), row.transfer_id)
    return len(rows)


async def expire_unaccepted(ctx: NodeContext) -> None:
    """The periodic job (bootstrap) around reject_unaccepted."""
    async with UnitOfWork(ctx.db) as uow:
        if await reject_unaccepted(ctx, uow):
            await uow.commit()


async def on_cancel(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCancel) -> None:
    """The hub's timeout fired. Answer with what happened; if nothing did, make sure nothing ever will."""
    row = (await uow.execute(for_update(sa.select(IN.c.state, IN.c.reason, IN.c.credited_at).where(
        IN.c.transfer_id == msg.transfer_id)))).first()
    if row is None:
        await uow.execute(sa.insert(IN).values(
            transfer_id=msg.transfer_id, binding_id="", giver_psn_no="", giver_admdvs="", receiver_psn_no="",
            amount_fen=0, state="CANCELLED", reason=msg.reason, accepted_at=ctx.clock.now()))
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=msg.reason)
    elif row.state == "CREDITED":
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="CREDITED", credited_at=row.credited_at)
    elif row.state == AWAITING:
        # Held for acceptance and not accepted yet: cancelled for good, so a later accept is refused.
        await uow.execute(sa.update(IN).where(IN.c.transfer_id == msg.transfer_id).values(
            state="CANCELLED", reason=msg.reason))
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=msg.reason)
    else:
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=row.reason)
    await _answer(ctx, uow, result, env.trace_id)


async def on_settled(ctx: NodeContext, uow: UnitOfWork, msg: TransferSettled) -> None:
    row = (await uow.execute(_OUT_BY_ID, {"transfer_id": msg.transfer_id})).first()
    if row is None or row.state not in IN_FLIGHT_STATES:
        return  # unknown or already final: settling twice must not move money twice
    now = ctx.clock.now()
    if msg.outcome == "CREDITED":
        await ledger_repo.post(uow, ledger.move("TRANSFER_SETTLE", msg.transfer_id, ledger.IN_FLIGHT,
                                                ledger.CLEARING, row.amount_fen), now)
        values: dict[str, Any] = {"state": "CREDITED", "credited_at": msg.credited_at or now, "settled_at": now}
    else:
        await ledger_repo.post(uow, ledger.move("TRANSFER_REFUND", msg.transfer_id, ledger.IN_FLIGHT,
                                                ledger.personal_account(row.giver_psn_no), row.amount_fen), now)
        values = {"state": "REFUNDED", "reason": msg.reason, "settled_at": now}
        await notify(uow, ctx, row.giver_psn_no, notices.transfer_refunded(row.amount_fen, msg.reason))
    await uow.execute(sa.update(OUT).where(OUT.c.transfer_id == msg.transfer_id).values(**values))
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": values["state"], "reason": msg.reason})


async def on_under_review(ctx: NodeContext, uow: UnitOfWork, msg: TransferUnderReview) -> None:
    """Issue 12: the hub holds the giver's transfer for a risk review (the giver sees HELD, reason RISK_REVIEW),
    or released it (ACCEPTED again, on its way). Guarded by state: a late or repeated message changes nothing."""
    if msg.state == "HELD":
        changed = await uow.execute(sa.update(OUT).where(OUT.c.transfer_id == msg.transfer_id,
                                                         OUT.c.state == "ACCEPTED").values(
            state=HELD, reason=msg.reason or "RISK_REVIEW"))
        row = (await uow.execute(sa.select(OUT.c.giver_psn_no).where(OUT.c.transfer_id == msg.transfer_id))).first()
        if changed.rowcount == 1 and row is not None:
            await notify(uow, ctx, row.giver_psn_no, notices.transfer_held_for_review())
    else:
        changed = await uow.execute(sa.update(OUT).where(OUT.c.transfer_id == msg.transfer_id,
                                                         OUT.c.state == HELD).values(state="ACCEPTED", reason=None))
    if changed.rowcount == 1:
        await audit.append(uow, "transfer.state", msg.transfer_id,
                           {"state": HELD if msg.state == "HELD" else "ACCEPTED", "reason": msg.reason})


def _out_view(row: Any) -> dict[str, Any]:
    view = {"transfer_id": row.transfer_id, "state": row.state, "amount_fen": row.amount_fen,
            "binding_id": row.binding_id, "accepted_at": iso(row.accepted_at), "role": "sent",
            "receiver_psn_no": row.receiver_psn_no, "receiver_admdvs": row.receiver_admdvs}
    if row.reason:
        view["reason"] = row.reason
    if row.credited_at:
        view["credited_at"] = iso(row.credited_at)
    return view


def _in_view(row: Any) -> dict[str, Any]:
    view = {"transfer_id": row.transfer_id, "state": row.state, "amount_fen": row.amount_fen,
            "binding_id": row.binding_id, "accepted_at": iso(row.accepted_at), "role": "received",
            "giver_psn_no": row.giver_psn_no, "giver_admdvs": row.giver_admdvs}
    if row.reason:
        view["reason"] = row.reason
    if row.credited_at:
        view["credited_at"] = iso(row.credited_at)
    if row.state == AWAITING:
        view["accept_by"] = iso(row.accept_by)
    return view


# What a receiver sees of transfers addressed to them: credited, or waiting for them to accept.
VISIBLE_TO_RECEIVER = ("CREDITED", AWAITING)


async def get_transfer(view: ReadView, psn_no: str, transfer_id: str) -> dict[str, Any]:
    sent = (await view.execute(sa.select(OUT).where(OUT.c.transfer_id == transfer_id,
                                                    OUT.c.giver_psn_no == psn_no))).first()
    if sent is not None:
        return _out_view(sent)
    received = (await view.execute(sa.select(IN).where(IN.c.transfer_id == transfer_id,
                                                       IN.c.state.in_(VISIBLE_TO_RECEIVER),
                                                       IN.c.receiver_psn_no == psn_no))).first()
    if received is not None:
        return _in_view(received)
    raise NotFound("TRANSFER_NOT_FOUND", "no such transfer for this person")


async def list_transfers(view: ReadView, psn_no: str, role: str) -> list[dict[str, Any]]:
    if role == "sent":
        rows = await view.execute(sa.select(OUT).where(OUT.c.giver_psn_no == psn_no).order_by(OUT.c.accepted_at))
        return [_out_view(row) for row in rows]
    if role == "received":
        rows = await view.execute(sa.select(IN).where(IN.c.receiver_psn_no == psn_no,
                                                      IN.c.state.in_(VISIBLE_TO_RECEIVER))
                                  .order_by(IN.c.accepted_at))
        return [_in_view(row) for row in rows]
    raise DomainError("VALIDATION_ERROR", "role must be sent or received")
