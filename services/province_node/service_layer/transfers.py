"""Transfers, the heart of mutual aid (DESIGN.md "Flow of a cross-province transfer").

Source side: accept in one transaction (checks, PA -> IN_FLIGHT, transfer row, outbox), settle when the hub
says (IN_FLIGHT -> CLEARING, or back to the PA). Destination side: credit once (CLEARING -> WALLET) unless the
deadline passed or the hub cancelled first; every answer goes back to the hub through the outbox."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.tables import TransferIn, TransferOut
from services.province_node.domain import ledger, notices
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.domain.transfer_rules import check_transfer, shanghai_day
from services.province_node.service_layer.bindings import binding_for_giver, notify
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS
from shared.clock import iso
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    TransferCancel,
    TransferCredit,
    TransferCreditResult,
    TransferRequested,
    TransferSettled,
)
from shared.db import ReadView, UnitOfWork
from shared.outbox import emit
from shared.tokens import Claims

OUT = TransferOut.__table__  # type: ignore[attr-defined]
IN = TransferIn.__table__  # type: ignore[attr-defined]


def parse_amount_fen(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DomainError("INVALID_AMOUNT", "amount_fen must be a positive whole number of fen")
    return value


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
    day = shanghai_day(now)
    sent_today = (await uow.execute(sa.select(sa.func.count()).select_from(OUT).where(
        OUT.c.giver_psn_no == claims.psn_no, OUT.c.accepted_day == day))).scalar_one()
    pa = ledger.personal_account(claims.psn_no)
    check_transfer(ctx.policy, amount_fen=amount_fen, now=now, sent_today=int(sent_today),
                   balance_fen=await ledger_repo.balance(uow, pa) or 0)
    transfer_id = "T" + uuid.uuid4().hex
    await ledger_repo.post(uow, ledger.move("TRANSFER_HOLD", transfer_id, pa, ledger.IN_FLIGHT, amount_fen), now)
    await uow.execute(sa.insert(OUT).values(
        transfer_id=transfer_id, binding_id=binding_id, giver_psn_no=claims.psn_no,
        receiver_psn_no=binding.relative_psn_no, receiver_admdvs=binding.relative_admdvs, amount_fen=amount_fen,
        state="ACCEPTED", accepted_day=day, accepted_at=now))
    await emit(uow, topics.HUB_INBOUND, transfer_id, TransferRequested(
        transfer_id=transfer_id, binding_id=binding_id, giver_psn_no=claims.psn_no, giver_admdvs=ctx.admdvs,
        receiver_psn_no=binding.relative_psn_no, receiver_admdvs=binding.relative_admdvs, amount_fen=amount_fen,
        accepted_at=now), source=ctx.source, trace_id=transfer_id)
    return 202, {"transfer_id": transfer_id, "state": "ACCEPTED", "amount_fen": amount_fen,
                 "binding_id": binding_id, "accepted_at": iso(now)}


async def on_credit(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCredit) -> None:
    if (await uow.execute(sa.select(IN.c.state).where(IN.c.transfer_id == msg.transfer_id))).first():
        return  # already decided (credited, rejected or cancelled): the first decision stands
    now = ctx.clock.now()
    reason = await _credit_refusal(ctx, uow, msg, now)
    row = {"transfer_id": msg.transfer_id, "binding_id": msg.binding_id, "giver_psn_no": msg.giver_psn_no,
           "giver_admdvs": msg.giver_admdvs, "receiver_psn_no": msg.receiver_psn_no, "amount_fen": msg.amount_fen,
           "accepted_at": msg.accepted_at}
    if reason:
        await uow.execute(sa.insert(IN).values(state="REJECTED", reason=reason, **row))
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=reason)
    else:
        await ledger_repo.post(uow, ledger.move("TRANSFER_CREDIT", msg.transfer_id, ledger.CLEARING,
                                                ledger.wallet_account(msg.receiver_psn_no), msg.amount_fen), now)
        await uow.execute(sa.insert(IN).values(state="CREDITED", credited_at=now, **row))
        await notify(uow, ctx, msg.receiver_psn_no, notices.transfer_received(msg.amount_fen))
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="CREDITED", credited_at=now)
    await emit(uow, topics.HUB_INBOUND, msg.transfer_id, result, source=ctx.source, trace_id=env.trace_id)


async def _credit_refusal(ctx: NodeContext, uow: UnitOfWork, msg: TransferCredit, now: Any) -> str | None:
    if now > msg.credit_by:
        return "EXPIRED"
    person = (await uow.execute(sa.select(PERSONS.c.insured).where(PERSONS.c.psn_no == msg.receiver_psn_no))).first()
    if person is None:
        return "RECEIVER_UNKNOWN"
    if not person.insured:
        return "RECEIVER_NOT_INSURED"
    if await ledger_repo.balance(uow, ledger.wallet_account(msg.receiver_psn_no)) is None:
        return "WALLET_NOT_OPEN"
    return None


async def on_cancel(ctx: NodeContext, uow: UnitOfWork, env: Envelope, msg: TransferCancel) -> None:
    """The hub's timeout fired. Answer with what happened; if nothing did, make sure nothing ever will."""
    row = (await uow.execute(sa.select(IN.c.state, IN.c.reason, IN.c.credited_at).where(
        IN.c.transfer_id == msg.transfer_id))).first()
    if row is None:
        await uow.execute(sa.insert(IN).values(
            transfer_id=msg.transfer_id, binding_id="", giver_psn_no="", giver_admdvs="", receiver_psn_no="",
            amount_fen=0, state="CANCELLED", reason=msg.reason, accepted_at=ctx.clock.now()))
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=msg.reason)
    elif row.state == "CREDITED":
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="CREDITED", credited_at=row.credited_at)
    else:
        result = TransferCreditResult(transfer_id=msg.transfer_id, outcome="REJECTED", reason=row.reason)
    await emit(uow, topics.HUB_INBOUND, msg.transfer_id, result, source=ctx.source, trace_id=env.trace_id)


async def on_settled(ctx: NodeContext, uow: UnitOfWork, msg: TransferSettled) -> None:
    row = (await uow.execute(sa.select(OUT).where(OUT.c.transfer_id == msg.transfer_id))).first()
    if row is None or row.state != "ACCEPTED":
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
    return view


async def get_transfer(view: ReadView, psn_no: str, transfer_id: str) -> dict[str, Any]:
    sent = (await view.execute(sa.select(OUT).where(OUT.c.transfer_id == transfer_id,
                                                    OUT.c.giver_psn_no == psn_no))).first()
    if sent is not None:
        return _out_view(sent)
    received = (await view.execute(sa.select(IN).where(IN.c.transfer_id == transfer_id, IN.c.state == "CREDITED",
                                                       IN.c.receiver_psn_no == psn_no))).first()
    if received is not None:
        return _in_view(received)
    raise NotFound("TRANSFER_NOT_FOUND", "no such transfer for this person")


async def list_transfers(view: ReadView, psn_no: str, role: str) -> list[dict[str, Any]]:
    if role == "sent":
        rows = await view.execute(sa.select(OUT).where(OUT.c.giver_psn_no == psn_no).order_by(OUT.c.accepted_at))
        return [_out_view(row) for row in rows]
    if role == "received":
        rows = await view.execute(sa.select(IN).where(IN.c.receiver_psn_no == psn_no, IN.c.state == "CREDITED")
                                  .order_by(IN.c.accepted_at))
        return [_in_view(row) for row in rows]
    raise DomainError("VALIDATION_ERROR", "role must be sent or received")
