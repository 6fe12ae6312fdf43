"""Pharmacy payments of this node's people, asked for by the pharmacy gateway while the till waits.

Money moves here, in the payer's home province, whatever province the pharmacy is in: personal account and
wallet -> SYS:CLEARING (the pharmacy is paid through clearing), quota parts through the quota mirrors. Each
state-changing message is keyed by its msgid and its answer is stored in the same transaction as its postings
(`pos_operations`), so a retried message gets the same answer and moves nothing. A reversal (2601) undoes what
its original did, or nothing if it did nothing, and leaves the original's msgid PREEMPTED if it has not arrived
yet: the writes of one node are serialised (shared/db/), so a reversal and its late original cannot both win.
The settlement's states, and what each message does to them, are domain/pos_settlement.py; its rows are
adapters/pos_repo.py."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from pydantic import BaseModel

from services.province_node.adapters import ledger_repo, pos_repo
from services.province_node.adapters.pos_repo import PAYMENTS, PaymentRow, payment_from_row
from services.province_node.domain import ledger, pos_settlement, quota_rules
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.domain.payment_split import Split, account_posting, split_payment
from services.province_node.domain.pos_settlement import KIND_OF_INFNO, Effect, OperationKind, Transition
from services.province_node.service_layer import quotas
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.funds import funds_from, funds_of
from services.province_node.service_layer.persons import PERSONS, no_such_person, person_by_psn_no
from shared.contracts.internal_api import (
    PosBalances,
    PosCancelRequest,
    PosPaymentRequest,
    PosPaymentResult,
    PosPerson,
    PosPersonQuery,
    PosReverseRequest,
    PosSplitPreview,
)
from shared.db import ReadView, UnitOfWork

__all__ = ["PAYMENTS", "cancel", "lookup_person", "preview", "reverse", "settle"]


class Conflict(DomainError):
    status = 409


# ------------------------------------------------------------------------------------------------ reading


async def _person(view: UnitOfWork | ReadView, query: PosPersonQuery) -> Any:
    if query.psn_no is not None:
        condition = PERSONS.c.psn_no == query.psn_no
    elif query.id_hash is not None:
        condition = PERSONS.c.id_hash == query.id_hash
    else:
        condition = PERSONS.c.card_no_hash == query.card_hash
    row = (await view.execute(sa.select(PERSONS).where(condition).limit(1))).first()
    if row is None:
        raise no_such_person()
    return row


async def lookup_person(ctx: NodeContext, view: ReadView, query: PosPersonQuery) -> PosPerson:
    person = await _person(view, query)
    _, balances = await funds_of(ctx, view, person.psn_no)
    return PosPerson(psn_no=person.psn_no, name=person.name, gend=person.gend, brdy=person.brdy,
                     certno_masked=person.id_no_masked, insutype=person.insutype, insuplc_admdvs=ctx.admdvs,
                     pooling_admdvs=person.pooling_admdvs, insured=person.insured,
                     personal_account_fen=balances.personal_account_fen, wallet_fen=balances.wallet_fen,
                     quota_fen=balances.quota_fen)


async def _payable_person(view: UnitOfWork | ReadView, request: PosPaymentRequest) -> Any:
    person = await person_by_psn_no(view, request.psn_no)
    _check_payable(person.insured, person.insutype, request)
    return person


def _check_payable(insured: bool, insutype: str, request: PosPaymentRequest) -> None:
    if not insured:
        raise DomainError("INSURANCE_ENDED", "this person's insurance has ended; accounts cannot pay")
    if insutype != request.insutype:
        raise DomainError("INSUTYPE_MISMATCH", f"the person is insured under insutype {insutype}, "
                                               f"not {request.insutype}")


def _after(balances: PosBalances, split: Split) -> PosBalances:
    return PosBalances(
        personal_account_fen=None if balances.personal_account_fen is None
        else balances.personal_account_fen - split.acct_pay_fen,
        wallet_fen=None if balances.wallet_fen is None else balances.wallet_fen - split.wallet_pay_fen,
        quota_fen=balances.quota_fen - split.quota_pay_fen)


def _new_id(ctx: NodeContext) -> str:
    """30 characters: the province, then 24 random hex digits (unique without coordination)."""
    return ctx.admdvs + uuid.uuid4().hex[:24].upper()


async def preview(ctx: NodeContext, view: ReadView, request: PosPaymentRequest) -> PosSplitPreview:
    """2101: the split settle would make now, from the same balances and the same rule; nothing is written."""
    await _payable_person(view, request)
    funds, balances = await funds_of(ctx, view, request.psn_no)
    split = split_payment(request.medfee_fen, request.eligible_fen, funds, use_accounts=request.use_accounts)
    return PosSplitPreview(psn_no=request.psn_no, mdtrt_id=_new_id(ctx), medfee_fen=request.medfee_fen,
                           eligible_fen=request.eligible_fen, acct_pay_fen=split.acct_pay_fen,
                           wallet_pay_fen=split.wallet_pay_fen, quota_pay_fen=split.quota_pay_fen,
                           cash_pay_fen=split.cash_pay_fen, balances_after=_after(balances, split))


# ------------------------------------------------------------------------------------------------ writing


def _request_hash(request: BaseModel) -> str:
    """The message's identity for "same msgid, same request": its content, without the gateway's deadline."""
    content = request.model_dump(mode="json", exclude={"answer_by"})
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def _stored_answer(uow: UnitOfWork, msgid: str, kind: OperationKind,
                         request_hash: str) -> PosPaymentResult | None:
    """The answer already given to this msgid, or None if it is new. A msgid reversed before it arrived, or
    reused for another message, is refused."""
    row = await pos_repo.operation(uow, msgid)
    if row is None:
        return None
    if row.kind == OperationKind.PREEMPTED:
        raise Conflict("MSGID_REVERSED", f"message {msgid} was reversed (2601 {row.reversed_by}) before it "
                                         "arrived; it can never take effect")
    if row.kind != kind or row.request_hash != request_hash:
        raise Conflict("MSGID_REUSED", f"msgid {msgid} was already used for another message")
    return PosPaymentResult.model_validate_json(row.response)


async def _remember(ctx: NodeContext, uow: UnitOfWork, msgid: str, kind: OperationKind, request_hash: str,
                    result: PosPaymentResult) -> PosPaymentResult:
    await pos_repo.add_operation(uow, pos_repo.OperationRow(
        msgid=msgid, kind=kind.value, setl_id=result.payment.setl_id if result.payment else None,
        effect=result.effect, request_hash=request_hash, response=result.model_dump_json().encode(),
        reversed_by=None, created_at=ctx.clock.now()))
    return result


async def _move(ctx: NodeContext, uow: UnitOfWork, row: PaymentRow, kind: str, *, refund: bool) -> None:
    """Charge (or give back) exactly the parts this payment was paid from."""
    now = ctx.clock.now()
    posting = account_posting(kind, row.setl_id, row.psn_no, row.acct_pay_fen, row.wallet_pay_fen, refund=refund)
    if posting is not None:
        await ledger_repo.post(uow, posting, now)
    for binding_id, amount_fen in row.quota_spends():
        if refund:
            await quotas.return_quota_spend(ctx, uow, binding_id, amount_fen, row.setl_id)
        else:
            await quotas.spend_quota(ctx, uow, binding_id, amount_fen, row.setl_id)


async def _apply(ctx: NodeContext, uow: UnitOfWork, row: PaymentRow, transition: Transition,
                 ledger_kind: str) -> PaymentRow:
    """Move the money a transition says (CHARGE or REFUND the parts the payment was paid from), then write its
    state: the row as it is after."""
    if transition.effect != Effect.NONE:
        await _move(ctx, uow, row, ledger_kind, refund=transition.effect == Effect.REFUND)
    if not transition.changes(row.settlement_state):
        return row
    return await pos_repo.change_state(uow, row, transition.state, ctx.clock.now())


async def _result(ctx: NodeContext, uow: UnitOfWork, effect: Effect, row: PaymentRow | None,
                  psn_no: str) -> PosPaymentResult:
    _, balances = await funds_of(ctx, uow, psn_no)
    return PosPaymentResult(effect=effect.value, payment=None if row is None else payment_from_row(row),
                            balances_after=balances)


def _check_still_awaited(ctx: NodeContext, answer_by: datetime | None) -> None:
    if answer_by is not None and ctx.clock.now() > answer_by:
        raise Conflict("TOO_LATE", "the gateway stopped waiting for this message before it could be applied; "
                                   "nothing was done")


async def settle(ctx: NodeContext, uow: UnitOfWork, request: PosPaymentRequest) -> PosPaymentResult:
    """2102, once per msgid."""
    request_hash = _request_hash(request)
    now = ctx.clock.now()
    # Two tills paying for one person at once (two replicas): the split is computed from balances nobody
    # else changes meanwhile (the facts lock the person's account rows).
    facts = await pos_repo.settle_facts(
        uow, msgid=request.msgid, psn_no=request.psn_no, personal_account=ledger.personal_account(request.psn_no),
        wallet=ledger.wallet_account(request.psn_no), year=quota_rules.quota_year(now))
    if facts.operation_known:
        stored = await _stored_answer(uow, request.msgid, OperationKind.SETTLE, request_hash)
        assert stored is not None, "pos_operations rows are never deleted"
        return stored
    _check_still_awaited(ctx, request.answer_by)
    if facts.insured is None or facts.insutype is None:
        raise no_such_person()
    _check_payable(facts.insured, facts.insutype, request)
    funds, balances = funds_from(facts.personal_account_fen, facts.wallet_fen, facts.quotas)
    split = split_payment(request.medfee_fen, request.eligible_fen, funds, use_accounts=request.use_accounts)
    transition = pos_settlement.settled()
    row = PaymentRow(
        setl_id=_new_id(ctx), msgid=request.msgid, mdtrt_id=_new_id(ctx), psn_no=request.psn_no,
        fixmedins_code=request.fixmedins_code, insutype=request.insutype, state=transition.state.value, version=1,
        medfee_fen=request.medfee_fen, eligible_fen=request.eligible_fen, acct_pay_fen=split.acct_pay_fen,
        wallet_pay_fen=split.wallet_pay_fen, quota_pay_fen=split.quota_pay_fen,
        quota_parts=orjson.dumps(split.quota_parts).decode(), cash_pay_fen=split.cash_pay_fen, settled_at=now,
        updated_at=now)
    await pos_repo.add_payment(uow, row)
    await _move(ctx, uow, row, "POS_SETTLE", refund=False)
    # The balances read above, less this split: the same rows, under the same write lock (the hot path
    # saves reading them again).
    result = PosPaymentResult(effect=transition.effect.value, payment=payment_from_row(row),
                              balances_after=_after(balances, split))
    return await _remember(ctx, uow, request.msgid, OperationKind.SETTLE, request_hash, result)


async def _own_payment(uow: UnitOfWork, setl_id: str, psn_no: str, fixmedins_code: str) -> PaymentRow:
    row = await pos_repo.payment_locked(uow, setl_id)
    if row is None:
        raise NotFound("SETTLEMENT_NOT_FOUND", f"no settlement {setl_id} in this province")
    if row.psn_no != psn_no or row.fixmedins_code != fixmedins_code:
        raise Forbidden("NOT_YOUR_SETTLEMENT", f"settlement {setl_id} belongs to another person or institution")
    return row


async def cancel(ctx: NodeContext, uow: UnitOfWork, request: PosCancelRequest) -> PosPaymentResult:
    """2103: every part back where it came from. Cancelling a cancelled settlement again moves nothing."""
    request_hash = _request_hash(request)
    stored = await _stored_answer(uow, request.msgid, OperationKind.CANCEL, request_hash)
    if stored is not None:
        return stored
    _check_still_awaited(ctx, request.answer_by)
    row = await _own_payment(uow, request.setl_id, request.psn_no, request.fixmedins_code)
    transition = pos_settlement.after_cancel(row.settlement_state, request.setl_id)
    row = await _apply(ctx, uow, row, transition, "POS_CANCEL")
    return await _remember(ctx, uow, request.msgid, OperationKind.CANCEL, request_hash,
                           await _result(ctx, uow, transition.effect, row, request.psn_no))


async def reverse(ctx: NodeContext, uow: UnitOfWork, request: PosReverseRequest) -> PosPaymentResult:
    """2601: undo what message `omsgid` did while it is still in force; if it never arrived, make sure it never
    takes effect."""
    request_hash = _request_hash(request)
    stored = await _stored_answer(uow, request.msgid, OperationKind.REVERSE, request_hash)
    if stored is not None:
        return stored
    original = await pos_repo.operation_locked(uow, request.omsgid)
    if original is None:
        await pos_repo.preempt(uow, request.omsgid, request.msgid, ctx.clock.now())
        return await _remember(ctx, uow, request.msgid, OperationKind.REVERSE, request_hash,
                               await _result(ctx, uow, Effect.NONE, None, request.psn_no))
    if original.kind == OperationKind.PREEMPTED:
        return await _remember(ctx, uow, request.msgid, OperationKind.REVERSE, request_hash,
                               await _result(ctx, uow, Effect.NONE, None, request.psn_no))
    if original.kind != KIND_OF_INFNO[request.oinfno]:
        raise DomainError("OINFNO_MISMATCH", f"message {request.omsgid} was not a {request.oinfno}")
    assert original.setl_id is not None, f"a {original.kind} names its settlement"
    row = await _own_payment(uow, original.setl_id, request.psn_no, request.fixmedins_code)
    transition = pos_settlement.after_reversal(original.operation_kind, Effect(original.effect),
                                               original.reversed_by is not None, row.settlement_state)
    row = await _apply(ctx, uow, row, transition, "POS_REVERSAL")
    if original.reversed_by is None:
        await pos_repo.mark_reversed(uow, request.omsgid, request.msgid)
    return await _remember(ctx, uow, request.msgid, OperationKind.REVERSE, request_hash,
                           await _result(ctx, uow, transition.effect, row, request.psn_no))
