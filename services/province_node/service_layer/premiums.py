"""Resident premiums (城乡居民医保缴费) paid by the 医保钱包: from the caller's wallet, or by a giver from the
quota of a binding. The beneficiary's province records the payment, once per person and year.

Wallet: the beneficiary's node reserves the (person, year) slot first (synchronously, through the hub), then
the payer's node debits the wallet and announces the payment; the beneficiary's node books it when the event
arrives. Quota: the quota's mirror sits at the relative's (= beneficiary's) node, so that node does it all in
one transaction — the giver's node only asks, through the hub."""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa

from services.province_node.adapters import binding_repo, ledger_repo
from services.province_node.adapters.mutual_aid_tables import PremiumPayment
from services.province_node.domain import ledger, notices
from services.province_node.domain.errors import DomainError
from services.province_node.service_layer.bindings import binding_for_giver, notify
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS, no_such_person
from services.province_node.service_layer.quotas import spend_quota
from shared.contracts import topics
from shared.contracts.internal_api import PremiumQuotaRequest, PremiumReservation, PremiumReservationRequest
from shared.contracts.mutual_aid_events import PremiumPaid
from shared.db import ReadView, UnitOfWork, for_update
from shared.ids import InvalidIdNo, id_hash
from shared.outbox import emit
from shared.tables import table
from shared.tokens import Claims

PAYMENTS = table(PremiumPayment)

log = logging.getLogger("yibao.node.premiums")


@dataclass(frozen=True)
class PremiumPaymentRequest:
    """`POST /v1/premiums` (entrypoints/mutual_aid_api.PremiumRequest); the amount as it came (checked here)."""
    beneficiary_id_no: str
    year: int
    amount_fen: Any
    payer: Literal["wallet", "quota"]
    binding_id: str | None


def _amount(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DomainError("INVALID_AMOUNT", "amount_fen must be a positive whole number of fen")
    return value


def _beneficiary_hash(ctx: NodeContext, id_no: str) -> str:
    try:
        return id_hash(ctx.settings.id_hash_key_bytes, id_no)
    except InvalidIdNo as exc:
        raise DomainError("INVALID_ID_NO", "beneficiary_id_no fails the GB 11643 check") from exc


def payment_id_for(principal: str, idempotency_key: str | None) -> str:
    """With an Idempotency-Key a retry names the same payment, so the beneficiary's node recognises it."""
    if idempotency_key is None:
        return "P" + uuid.uuid4().hex
    return "P" + hashlib.sha256(f"{principal}|{idempotency_key}".encode()).hexdigest()[:32]


async def prepare(ctx: NodeContext, claims: Claims, body: PremiumPaymentRequest,
                  idempotency_key: str | None) -> PremiumReservation:
    """Outside the write lock: the synchronous part through the hub (reserve the slot, or pay from quota)."""
    amount_fen = _amount(body.amount_fen)
    beneficiary = _beneficiary_hash(ctx, body.beneficiary_id_no)
    payment_id = payment_id_for(claims.psn_no, idempotency_key)
    if body.payer == "quota":
        if not body.binding_id:
            raise DomainError("VALIDATION_ERROR", "binding_id is required to pay from a quota")
        return await ctx.hub.premium_from_quota(PremiumQuotaRequest(
            payment_id=payment_id, beneficiary_id_hash=beneficiary, year=body.year, amount_fen=amount_fen,
            payer_psn_no=claims.psn_no, payer_admdvs=ctx.admdvs, binding_id=body.binding_id))
    request = PremiumReservationRequest(payment_id=payment_id, beneficiary_id_hash=beneficiary, year=body.year,
                                        amount_fen=amount_fen, payer_psn_no=claims.psn_no, payer_admdvs=ctx.admdvs)
    reservation = await ctx.hub.reserve_premium(request)
    # "Already paid" is the more useful answer, so the slot is checked first; a payer who then cannot pay
    # gives it back at once rather than holding it until it expires.
    async with ReadView(ctx.db) as view:
        balance_fen = await ledger_repo.balance(view, ledger.wallet_account(claims.psn_no))
    if balance_fen is None or balance_fen < amount_fen:
        await ctx.hub.release_premium(request)
        if balance_fen is None:
            raise DomainError("WALLET_NOT_OPEN", "open the wallet first")
        raise DomainError("INSUFFICIENT_FUNDS", "the wallet does not hold that much")
    return reservation


async def pay(ctx: NodeContext, uow: UnitOfWork, claims: Claims, body: PremiumPaymentRequest,
              reservation: PremiumReservation) -> dict[str, Any]:
    now = ctx.clock.now()
    if body.payer == "quota":
        # Already paid at the relative's node (it holds the quota's mirror); this node only answers.
        assert body.binding_id is not None
        await binding_for_giver(uow, body.binding_id, claims.psn_no)
    else:
        wallet = ledger.wallet_account(claims.psn_no)
        if await ledger_repo.balance(uow, wallet) is None:
            raise DomainError("WALLET_NOT_OPEN", "open the wallet first")
        await ledger_repo.post(uow, ledger.move("PREMIUM_PAID", reservation.payment_id, wallet, ledger.CLEARING,
                                                reservation.amount_fen), now)
        await emit(uow, topics.HUB_INBOUND, reservation.payment_id, PremiumPaid(
            payment_id=reservation.payment_id, beneficiary_psn_no=reservation.beneficiary_psn_no,
            beneficiary_admdvs=reservation.beneficiary_admdvs, payer_psn_no=claims.psn_no,
            payer_admdvs=ctx.admdvs, year=reservation.year, amount_fen=reservation.amount_fen, paid_at=now),
            source=ctx.source, trace_id=reservation.payment_id)
    return {"payment_id": reservation.payment_id, "state": "PAID", "year": reservation.year,
            "amount_fen": reservation.amount_fen, "payer": body.payer,
            "beneficiary_psn_no": reservation.beneficiary_psn_no,
            "beneficiary_admdvs": reservation.beneficiary_admdvs}


# ---------------------------------------------------------------------------------------- beneficiary's side


async def _resident(uow: UnitOfWork, beneficiary_id_hash: str) -> Any:
    person = (await uow.execute(sa.select(PERSONS).where(PERSONS.c.id_hash == beneficiary_id_hash))).first()
    if person is None:
        raise no_such_person()
    if person.insutype != "390" or not person.insured:
        raise DomainError("PREMIUM_NOT_RESIDENT", "only an insured resident (390) pays a resident premium")
    return person


async def _claim_slot(ctx: NodeContext, uow: UnitOfWork, person: Any, request: PremiumReservationRequest,
                      state: str, source: str, binding_id: str | None) -> bool:
    """Take the person's premium slot for the year; False when this payment holds it already (a retry)."""
    taken = (await uow.execute(sa.select(PAYMENTS.c.payment_id).where(
        PAYMENTS.c.beneficiary_psn_no == person.psn_no, PAYMENTS.c.year == request.year))).first()
    if taken is not None:
        if taken.payment_id == request.payment_id:
            return False  # a retry of the same payment
        raise DomainError("PREMIUM_ALREADY_PAID", f"the {request.year} premium of this person is already paid",
                          status=409)
    # Two payers at once (two replicas): the unique (person, year) key lets one in; the other runs again and
    # finds the slot taken.
    await uow.execute(sa.insert(PAYMENTS).values(
        payment_id=request.payment_id, beneficiary_psn_no=person.psn_no, year=request.year,
        amount_fen=request.amount_fen, state=state, payer_psn_no=request.payer_psn_no,
        payer_admdvs=request.payer_admdvs, source=source, binding_id=binding_id, created_at=ctx.clock.now(),
        paid_at=ctx.clock.now() if state == "PAID" else None))
    return True


def _reservation(ctx: NodeContext, person: Any, request: PremiumReservationRequest) -> dict[str, Any]:
    return PremiumReservation(payment_id=request.payment_id, beneficiary_psn_no=person.psn_no,
                              beneficiary_admdvs=ctx.admdvs, year=request.year,
                              amount_fen=request.amount_fen).model_dump(mode="json")


async def reserve(ctx: NodeContext, uow: UnitOfWork, request: PremiumReservationRequest) -> dict[str, Any]:
    person = await _resident(uow, request.beneficiary_id_hash)
    await _claim_slot(ctx, uow, person, request, "RESERVED", "wallet", None)
    return _reservation(ctx, person, request)


async def release(ctx: NodeContext, uow: UnitOfWork, request: PremiumReservationRequest) -> dict[str, Any]:
    await uow.execute(sa.delete(PAYMENTS).where(PAYMENTS.c.payment_id == request.payment_id,
                                                PAYMENTS.c.state == "RESERVED"))
    return {"payment_id": request.payment_id, "released": True}


async def pay_from_quota(ctx: NodeContext, uow: UnitOfWork, request: PremiumQuotaRequest) -> dict[str, Any]:
    person = await _resident(uow, request.beneficiary_id_hash)
    binding = await binding_repo.binding(uow, request.binding_id)
    if binding is None or binding.giver_psn_no != request.payer_psn_no or binding.relative_psn_no != person.psn_no:
        raise DomainError("QUOTA_NOT_FOUND", "the quota of this binding cannot pay this person's premium")
    if not await _claim_slot(ctx, uow, person, request, "PAID", "quota", request.binding_id):
        # A retry (the payer's first answer was lost): the quota was spent the first time, and only then.
        return _reservation(ctx, person, request)
    await spend_quota(ctx, uow, request.binding_id, request.amount_fen, request.payment_id, use="premium")
    await notify(uow, ctx, person.psn_no, notices.premium_paid(request.amount_fen, request.year))
    return _reservation(ctx, person, request)


async def on_premium_paid(ctx: NodeContext, uow: UnitOfWork, msg: PremiumPaid) -> None:
    """The payer's node took the money: book it. Locked, so the reservation's expiry (perhaps on another
    replica) waits and then finds it PAID. A payment that arrives after its reservation expired is booked all
    the same: the year's slot if it is still free, else the suspense account (someone else paid meanwhile)."""
    row = (await uow.execute(for_update(sa.select(PAYMENTS).where(PAYMENTS.c.payment_id == msg.payment_id)))).first()
    if row is not None and row.state == "PAID":
        return
    now = ctx.clock.now()
    income = ledger.PREMIUM_INCOME
    if row is not None:
        await uow.execute(sa.update(PAYMENTS).where(PAYMENTS.c.payment_id == msg.payment_id).values(
            state="PAID", paid_at=now))
    elif (await uow.execute(sa.select(PAYMENTS.c.payment_id).where(
            PAYMENTS.c.beneficiary_psn_no == msg.beneficiary_psn_no, PAYMENTS.c.year == msg.year))).first() is None:
        log.warning("premium %s arrived after its reservation expired; booked, the slot was free", msg.payment_id)
        await uow.execute(sa.insert(PAYMENTS).values(
            payment_id=msg.payment_id, beneficiary_psn_no=msg.beneficiary_psn_no, year=msg.year,
            amount_fen=msg.amount_fen, state="PAID", payer_psn_no=msg.payer_psn_no, payer_admdvs=msg.payer_admdvs,
            source="wallet", binding_id=None, created_at=now, paid_at=now))
    else:
        log.error("premium %s arrived after its reservation expired and the year was paid by another payment; "
                  "%d fen kept in %s for an operator to return", msg.payment_id, msg.amount_fen,
                  ledger.PREMIUM_SUSPENSE)
        income = ledger.PREMIUM_SUSPENSE
    await ledger_repo.post(uow, ledger.move("PREMIUM_RECEIVED", msg.payment_id, ledger.CLEARING, income,
                                            msg.amount_fen), now)
    if income == ledger.PREMIUM_INCOME:
        await notify(uow, ctx, msg.beneficiary_psn_no, notices.premium_paid(msg.amount_fen, msg.year))


async def expire_reservations(ctx: NodeContext, uow: UnitOfWork, ttl_s: float) -> int:
    """A reservation whose payment never came (the payer's node refused or crashed) frees the slot again."""
    if not await uow.lead("premium-reservations"):
        return 0
    cutoff = ctx.clock.now() - timedelta(seconds=ttl_s)
    result = await uow.execute(sa.delete(PAYMENTS).where(PAYMENTS.c.state == "RESERVED",
                                                         PAYMENTS.c.created_at < cutoff))
    return int(result.rowcount or 0)
