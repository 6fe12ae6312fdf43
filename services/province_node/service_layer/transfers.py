"""Transfers, the heart of mutual aid (DESIGN.md "Flow of a cross-province transfer"); the states and what each
change does are domain/transfer_lifecycle.py, the rows adapters/transfer_repo.py.

Source side: accept in one transaction (checks, PA -> IN_FLIGHT, transfer row, outbox); close when the hub
decides (IN_FLIGHT -> CLEARING, or back to the PA). Destination side: credit once (CLEARING -> WALLET) unless the
deadline passed or the hub cancelled first; every answer goes back to the hub through the outbox.

Where receivers must accept (config: YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES), the destination holds an arriving
transfer as AWAITING_ACCEPTANCE instead of crediting it, and tells the hub until when (accept_by, next 06:00).
Then exactly one of three ends it, whichever locks the held row first (`FOR UPDATE`, across replicas too): the
receiver accepts (credited by the same code as an immediate credit), accept_by passes (the expiry scan rejects
it, NOT_ACCEPTED), or the hub cancels (binding ended, or the hub's own deadline passed). The held row is the one
place each of them reads and changes, so a cancelled or expired transfer can never be accepted afterwards."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.province_node.adapters import binding_repo, ledger_repo, transfer_repo
from services.province_node.adapters.transfer_repo import IN as IN  # read by tests
from services.province_node.adapters.transfer_repo import OUT as OUT  # read by tests
from services.province_node.adapters.transfer_repo import ReceivedTransfer, SentTransfer
from services.province_node.domain import binding_replica, ledger, notices
from services.province_node.domain import transfer_lifecycle as lifecycle
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.domain.transfer_lifecycle import Answer, ReceivedState, SentState
from services.province_node.domain.transfer_rules import accept_by, check_transfer, shanghai_day
from services.province_node.service_layer.bindings import giver_binding, notify
from services.province_node.service_layer.context import NodeContext
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
from shared.outbox import emit
from shared.tokens import Claims


def parse_amount_fen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DomainError("INVALID_AMOUNT", "amount_fen must be a positive whole number of fen")
    return value


async def send_transfer(ctx: NodeContext, uow: UnitOfWork, claims: Claims, binding_id: Any,
                        amount: Any) -> dict[str, Any]:
    if not isinstance(binding_id, str) or not binding_id:
        raise DomainError("VALIDATION_ERROR", "binding_id is required")
    amount_fen = parse_amount_fen(amount)
    now = ctx.clock.now()
    if not claims.has_face_step_up(now.timestamp()):
        raise Forbidden("STEP_UP_REQUIRED", "a transfer needs a face verification in the last 5 minutes")
    # The giver's account row is locked (and read) with the binding, before today's transfers are counted: two
    # sends of one giver (two replicas) count and check the balance one after the other, so the daily limit holds.
    facts = await transfer_repo.send_facts(uow, binding_id=binding_id, giver_psn_no=claims.psn_no,
                                           personal_account=ledger.personal_account(claims.psn_no))
    binding = giver_binding(uow, facts.binding, claims.psn_no)
    binding_replica.check_active(binding.state)
    if not facts.insured:
        # Bindings end with the insurance (person_status.py): refused at once, before the hub's BindingChanged.
        raise DomainError("BINDING_NOT_ACTIVE", "the giver's insurance has ended, and every binding with it")
    day = shanghai_day(now)
    check_transfer(ctx.policy, amount_fen=amount_fen, now=now,
                   sent_today=await transfer_repo.count_sent_on(uow, claims.psn_no, day),
                   balance_fen=facts.personal_account_fen or 0)
    transfer_id = "T" + uuid.uuid4().hex
    await ledger_repo.post(uow, lifecycle.hold(claims.psn_no, transfer_id, amount_fen), now)
    await transfer_repo.add_sent(uow, SentTransfer(
        transfer_id=transfer_id, binding_id=binding_id, giver_psn_no=claims.psn_no,
        receiver_psn_no=binding.relative_psn_no, receiver_admdvs=binding.relative_admdvs, amount_fen=amount_fen,
        state=SentState.ACCEPTED, reason=None, accepted_day=day, accepted_at=now, credited_at=None,
        settled_at=None))
    await emit(uow, topics.HUB_INBOUND, transfer_id, TransferRequested(
        transfer_id=transfer_id, binding_id=binding_id, giver_psn_no=claims.psn_no, giver_admdvs=ctx.admdvs,
        receiver_psn_no=binding.relative_psn_no, receiver_admdvs=binding.relative_admdvs, amount_fen=amount_fen,
        accepted_at=now), source=ctx.source, trace_id=transfer_id)
    return {"transfer_id": transfer_id, "state": SentState.ACCEPTED.value, "amount_fen": amount_fen,
            "binding_id": binding_id, "accepted_at": iso(now)}


# ----------------------------------------------------------------------------------- the receiver's node


async def on_credit(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCredit) -> None:
    facts = await transfer_repo.arrival_facts(
        uow, transfer_id=msg.transfer_id, receiver_psn_no=msg.receiver_psn_no,
        wallet_account=ledger.wallet_account(msg.receiver_psn_no), binding_id=msg.binding_id)
    if facts.received_state is not None:
        return  # already decided (credited, rejected or cancelled): the first decision stands
    now = ctx.clock.now()
    wallet_open = bool(facts.insured) and facts.wallet_open
    reason = lifecycle.credit_refusal(
        now=now, credit_by=msg.credit_by, receiver_insured=facts.insured, wallet_open=wallet_open,
        binding_ended=wallet_open and binding_replica.has_ended(facts.binding_state))
    state = lifecycle.on_arrival(reason, receivers_must_accept=ctx.settings.receivers_must_accept)
    held_until = accept_by(now, ctx.settings.accept_by_time) if state == ReceivedState.AWAITING_ACCEPTANCE else None
    await transfer_repo.add_received(uow, ReceivedTransfer(
        transfer_id=msg.transfer_id, binding_id=msg.binding_id, giver_psn_no=msg.giver_psn_no,
        giver_admdvs=msg.giver_admdvs, receiver_psn_no=msg.receiver_psn_no, amount_fen=msg.amount_fen,
        state=state, reason=reason, accepted_at=msg.accepted_at,
        credited_at=now if state == ReceivedState.CREDITED else None, accept_by=held_until))
    if state == ReceivedState.REJECTED:
        await _answer(ctx, uow, TransferCreditResult(transfer_id=msg.transfer_id, outcome=Answer.REJECTED.value,
                                                     reason=reason), env.trace_id)
    elif held_until is not None:
        await notify(uow, ctx, msg.receiver_psn_no, notices.transfer_awaiting_acceptance(msg.amount_fen, held_until))
        await emit(uow, topics.HUB_INBOUND, msg.transfer_id,
                   TransferAwaitingAcceptance(transfer_id=msg.transfer_id, accept_by=held_until),
                   source=ctx.source, trace_id=env.trace_id)
    else:
        await _credit(ctx, uow, msg.transfer_id, msg.receiver_psn_no, msg.amount_fen, now, env.trace_id)


async def _credit(ctx: NodeContext, uow: UnitOfWork, transfer_id: str, receiver_psn_no: str, amount_fen: int,
                  now: datetime, trace_id: str) -> None:
    """The credit itself, on arrival or when the receiver accepts: CLEARING -> wallet, the receiver's notice,
    the CREDITED answer to the hub. The caller has marked the transfers_in row CREDITED."""
    await ledger_repo.post(uow, lifecycle.credit_posting(transfer_id, receiver_psn_no, amount_fen), now)
    await notify(uow, ctx, receiver_psn_no, notices.transfer_received(amount_fen))
    await _answer(ctx, uow, TransferCreditResult(transfer_id=transfer_id, outcome=Answer.CREDITED.value,
                                                 credited_at=now), trace_id)


async def _answer(ctx: NodeContext, uow: UnitOfWork, result: TransferCreditResult, trace_id: str) -> None:
    await emit(uow, topics.HUB_INBOUND, result.transfer_id, result, source=ctx.source, trace_id=trace_id)


async def _binding_ended(uow: UnitOfWork, binding_id: str) -> bool:
    return binding_replica.has_ended(await binding_repo.state_of(uow, binding_id))


async def accept_transfer(ctx: NodeContext, uow: UnitOfWork, claims: Claims, transfer_id: str) -> dict[str, Any]:
    """`POST /v1/transfers/{id}:accept`, the receiver at their own node. No face step-up: accepting only lets
    money in, into the receiver's own wallet (the giver's face verification guarded the money leaving)."""
    row = await transfer_repo.received_for_person(uow, claims.psn_no, transfer_id)
    if row is None:
        raise NotFound("TRANSFER_NOT_FOUND", "no such transfer for this person")
    now = ctx.clock.now()
    if lifecycle.accept(row.state, accept_by=row.accept_by, now=now) is None:
        return _in_view(row)  # accepting twice is harmless
    lifecycle.refuse_acceptance_if_binding_ended(await _binding_ended(uow, row.binding_id))
    await transfer_repo.set_received(uow, transfer_id, ReceivedState.CREDITED, credited_at=now)
    await _credit(ctx, uow, transfer_id, row.receiver_psn_no, row.amount_fen, now, transfer_id)
    return _in_view(await transfer_repo.received(uow, transfer_id))


async def reject_unaccepted(ctx: NodeContext, uow: UnitOfWork, limit: int = 500) -> int:
    """Held transfers whose accept_by has passed go back to the giver: REJECTED (NOT_ACCEPTED) here, so the
    receiver can no longer accept them, and that answer to the hub, which refunds."""
    if not await uow.lead("transfer-acceptance"):
        return 0
    expired = await transfer_repo.awaiting_past(uow, ctx.clock.now(), limit)
    state, reason = lifecycle.expire()
    for transfer_id in expired:
        await transfer_repo.set_received(uow, transfer_id, state, reason=reason)
        await _answer(ctx, uow, TransferCreditResult(transfer_id=transfer_id, outcome=Answer.REJECTED.value,
                                                     reason=reason), transfer_id)
    return len(expired)


async def expire_unaccepted(ctx: NodeContext) -> None:
    """The periodic job (bootstrap) around reject_unaccepted."""
    async with UnitOfWork(ctx.db) as uow:
        if await reject_unaccepted(ctx, uow):
            await uow.commit()


async def on_cancel(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCancel) -> None:
    """The hub's timeout fired, or the binding ended. Answer with what happened; if nothing did, make sure
    nothing ever will."""
    row = await transfer_repo.received_for_update(uow, msg.transfer_id)
    decision = lifecycle.after_cancel(None if row is None else row.state)
    if row is None:
        assert decision.write is not None
        await transfer_repo.add_received(uow, ReceivedTransfer(  # the tombstone a late credit finds
            transfer_id=msg.transfer_id, binding_id="", giver_psn_no="", giver_admdvs="", receiver_psn_no="",
            amount_fen=0, state=decision.write, reason=msg.reason, accepted_at=ctx.clock.now(), credited_at=None,
            accept_by=None))
    elif decision.write is not None:
        await transfer_repo.set_received(uow, msg.transfer_id, decision.write, reason=msg.reason)
    if decision.answer == Answer.CREDITED:
        assert row is not None
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome=decision.answer.value,
                                      credited_at=row.credited_at)
    else:
        reason = msg.reason if decision.decided_by_cancel or row is None else row.reason
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome=decision.answer.value, reason=reason)
    await _answer(ctx, uow, result, env.trace_id)


# -------------------------------------------------------------------------------------- the giver's node


async def on_closed(ctx: NodeContext, uow: UnitOfWork, msg: TransferSettled) -> None:
    """The hub closed the giver's transfer (its `TransferSettled`): the money in flight moves on to CLEARING
    (credited) or back to the giver (refunded)."""
    row = await transfer_repo.sent_for_update(uow, msg.transfer_id)
    if row is None:
        return  # unknown here
    close = lifecycle.close(row.state, lifecycle.Closing(msg.outcome), transfer_id=msg.transfer_id,
                            giver_psn_no=row.giver_psn_no, amount_fen=row.amount_fen, reason=msg.reason)
    if close is None:
        return  # already closed: closing twice must not move money twice
    now = ctx.clock.now()
    await ledger_repo.post(uow, close.posting, now)
    if close.notice is not None:
        await notify(uow, ctx, row.giver_psn_no, close.notice)
    await transfer_repo.close_sent(uow, msg.transfer_id, close.state, reason=msg.reason,
                                   credited_at=msg.credited_at or now, closed_at=now)
    await audit.append(uow, "transfer.state", msg.transfer_id, {"state": close.state.value, "reason": msg.reason})



async def on_under_review(ctx: NodeContext, uow: UnitOfWork, msg: TransferUnderReview) -> None:
    """Issue 12: the hub holds the giver's transfer for a risk review (the giver sees HELD, reason RISK_REVIEW),
    or released it (ACCEPTED again, on its way). Guarded by state: a late or repeated message changes nothing."""
    review = lifecycle.Review(msg.state)
    move = lifecycle.review_move(review)
    reason = lifecycle.held_reason(msg.reason) if move.to_state == SentState.HELD else None
    moved = await transfer_repo.move_sent(uow, msg.transfer_id, move.from_state, move.to_state, reason)
    if move.to_state == SentState.HELD:
        giver_psn_no = await transfer_repo.giver_of(uow, msg.transfer_id)
        if moved and giver_psn_no is not None:
            await notify(uow, ctx, giver_psn_no, notices.transfer_held_for_review())
    if moved:
        await audit.append(uow, "transfer.state", msg.transfer_id,
                           {"state": move.to_state.value, "reason": msg.reason})


# ----------------------------------------------------------------------------------------------- reads


def _out_view(row: SentTransfer) -> dict[str, Any]:
    view = {"transfer_id": row.transfer_id, "state": row.state.value, "amount_fen": row.amount_fen,
            "binding_id": row.binding_id, "accepted_at": iso(row.accepted_at), "role": "sent",
            "receiver_psn_no": row.receiver_psn_no, "receiver_admdvs": row.receiver_admdvs}
    if row.reason:
        view["reason"] = row.reason
    if row.credited_at:
        view["credited_at"] = iso(row.credited_at)
    return view


def _in_view(row: ReceivedTransfer) -> dict[str, Any]:
    view = {"transfer_id": row.transfer_id, "state": row.state.value, "amount_fen": row.amount_fen,
            "binding_id": row.binding_id, "accepted_at": iso(row.accepted_at), "role": "received",
            "giver_psn_no": row.giver_psn_no, "giver_admdvs": row.giver_admdvs}
    if row.reason:
        view["reason"] = row.reason
    if row.credited_at:
        view["credited_at"] = iso(row.credited_at)
    if row.state == ReceivedState.AWAITING_ACCEPTANCE and row.accept_by is not None:
        view["accept_by"] = iso(row.accept_by)
    return view


async def get_transfer(view: ReadView, psn_no: str, transfer_id: str) -> dict[str, Any]:
    sent = await transfer_repo.sent_by(view, psn_no, transfer_id)
    if sent is not None:
        return _out_view(sent)
    received = await transfer_repo.received_by(view, psn_no, transfer_id, lifecycle.VISIBLE_TO_RECEIVER)
    if received is not None:
        return _in_view(received)
    raise NotFound("TRANSFER_NOT_FOUND", "no such transfer for this person")


async def list_transfers(view: ReadView, psn_no: str, role: str) -> list[dict[str, Any]]:
    if role == "sent":
        return [_out_view(row) for row in await transfer_repo.sent_of(view, psn_no)]
    if role == "received":
        return [_in_view(row) for row in await transfer_repo.received_of(view, psn_no, lifecycle.VISIBLE_TO_RECEIVER)]
    raise DomainError("VALIDATION_ERROR", "role must be sent or received")
