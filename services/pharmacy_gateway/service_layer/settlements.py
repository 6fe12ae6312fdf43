"""The gateway's view of settlements, kept in step with the payer's node, and what clearing learns from it.

Every answer of a node about a settlement carries the settlement as the node now holds it, with a version that
grows with each change. The gateway keeps the newest version it has heard of (answers can arrive out of order:
a slow cancel's answer after its reversal's), and whenever that makes a cross-province settlement start or stop
taking effect, it publishes `pos.settlement.recorded.v1` through its outbox, in the same transaction. So the
hub's obligations follow the node's money: a settlement whose 2102 answer was lost and which a 2601 then
reversed never reaches clearing at all."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa

from services.pharmacy_gateway.adapters.tables import Settlement
from services.pharmacy_gateway.service_layer.context import GatewayContext, InstitutionView
from shared import audit
from shared.clock import SHANGHAI
from shared.contracts import topics
from shared.contracts.events import PosSettlementRecorded, SettlementReported
from shared.contracts.internal_api import PosPayment
from shared.db import Prepared, PreparedInsertOrNothing, ReadView, UnitOfWork
from shared.outbox import emit
from shared.regions import province_of
from shared.tables import table

SETTLEMENTS = table(Settlement)

IN_EFFECT = "SETTLED"

# Built once: every settle runs these (`b_` names keep the key apart from the columns an UPDATE sets).
_SETTLEMENT = Prepared(sa.select(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == sa.bindparam("b_setl_id")))
_NEW_SETTLEMENT_OR_NOTHING = PreparedInsertOrNothing(SETTLEMENTS, "setl_id")
_NEWER_STATE = Prepared(sa.update(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == sa.bindparam("b_setl_id")))


def is_cross_province(institution: InstitutionView, payer_admdvs: str) -> bool:
    return province_of(institution.admdvs) != province_of(payer_admdvs)


async def settlement(view: UnitOfWork | ReadView, setl_id: str) -> Any:
    return (await view.execute(_SETTLEMENT, {"b_setl_id": setl_id})).first()


async def record(ctx: GatewayContext, uow: UnitOfWork, payment: PosPayment, *, institution: InstitutionView,
                 payer_admdvs: str, msgid: str) -> None:
    """Take in the node's latest word on `payment` (inside the message's finishing transaction)."""
    now = ctx.clock.now()
    new_row = {
        "setl_id": payment.setl_id, "msgid": payment.msgid, "mdtrt_id": payment.mdtrt_id,
        "fixmedins_code": payment.fixmedins_code, "pharmacy_admdvs": institution.admdvs,
        "psn_no": payment.psn_no, "payer_admdvs": payer_admdvs, "insutype": payment.insutype,
        "state": payment.state, "version": payment.version, "medfee_fen": payment.medfee_fen,
        "eligible_fen": payment.eligible_fen, "acct_pay_fen": payment.acct_pay_fen,
        "mulaid_pay_fen": payment.mulaid_pay_fen, "cash_pay_fen": payment.cash_pay_fen,
        "settle_day": payment.settled_at.astimezone(SHANGHAI).date().isoformat(),
        "settled_at": payment.settled_at, "updated_at": now}

    async def inserted() -> bool:
        return bool((await uow.execute(_NEW_SETTLEMENT_OR_NOTHING.on(uow), new_row)).first())

    # A settlement's first version (a 2102's answer) is almost always news: inserted as the transaction commits,
    # and the events below written only if it was (UnitOfWork.guard), with no statement of its own before the
    # commit (issue 9: a settle's answer at the gateway is then one statement). Where the row exists already (a
    # reversal's answer got in first), the first version is older news and nothing follows from it.
    row = None
    if payment.version == 1:
        uow.guard(_NEW_SETTLEMENT_OR_NOTHING, new_row)
    else:
        if uow.shares_rows:
            # Two answers about one settlement recorded at once (a settle and its reversal on two replicas): one
            # after the other, so each change of effect is published once and the newest version stays.
            await uow.lock_name(f"settlement|{payment.setl_id}")
        row = await settlement(uow, payment.setl_id)
        # None: a later version heard first, or a first one racing another replica's insert (which this waits
        # for, then reads)
        if row is None and not await inserted():
            row = await settlement(uow, payment.setl_id)
        if row is not None:
            if payment.version <= row.version:
                return  # older news than what the gateway already holds
            await uow.execute(_NEWER_STATE, {"b_setl_id": payment.setl_id, "state": payment.state,
                                             "version": payment.version, "updated_at": now})
    was_in_effect = row is not None and row.state == IN_EFFECT
    in_effect = payment.state == IN_EFFECT
    if was_in_effect == in_effect:
        return
    await report_for_supervision(ctx, uow, payment, institution=institution, payer_admdvs=payer_admdvs,
                                 in_effect=in_effect, infno=infno_of_state(payment.state, row is None),
                                 occurred_at=now)
    cleared_fen = payment.acct_pay_fen + payment.mulaid_pay_fen
    if cleared_fen == 0 or not is_cross_province(institution, payer_admdvs):
        return
    ref = f"{payment.setl_id}:{payment.version}"
    await emit(uow, topics.HUB_INBOUND, payment.setl_id, PosSettlementRecorded(
        ref=ref, effect="CHARGE" if in_effect else "REFUND", setl_id=payment.setl_id, version=payment.version,
        msgid=msgid, fixmedins_code=payment.fixmedins_code, pharmacy_admdvs=institution.admdvs,
        payer_admdvs=payer_admdvs, psn_no=payment.psn_no, acct_pay_fen=payment.acct_pay_fen,
        mulaid_pay_fen=payment.mulaid_pay_fen, amount_fen=cleared_fen, occurred_at=now),
        source=ctx.source, trace_id=payment.setl_id, message_id=f"pos-{ref}")


def infno_of_state(state: str, first_heard: bool) -> str:
    """The pharmacy message whose answer revealed the change: a settle (2102), a cancel (2103), a reversal."""
    return {"SETTLED": "2102", "CANCELLED": "2103"}.get(state, "2601")


async def report_for_supervision(ctx: GatewayContext, uow: UnitOfWork, payment: PosPayment, *,
                                 institution: InstitutionView, payer_admdvs: str, in_effect: bool, infno: str,
                                 occurred_at: Any) -> None:
    """Issue 12: every settlement that starts or stops taking effect, in- and cross-province, goes to the hub's
    supervision (rules, a person's activity, wallet-use statistics) and into this gateway's audit journal, in
    the transaction that records it: after the till has its answer, so nobody waits for the hub."""
    effect = "CHARGE" if in_effect else "REFUND"
    await emit(uow, topics.HUB_INBOUND, payment.setl_id, SettlementReported(
        setl_id=payment.setl_id, version=payment.version, effect=effect, use="pharmacy", infno=infno,
        fixmedins_code=payment.fixmedins_code, institution_admdvs=institution.admdvs, payer_admdvs=payer_admdvs,
        psn_no=payment.psn_no, medfee_fen=payment.medfee_fen, acct_pay_fen=payment.acct_pay_fen,
        wallet_pay_fen=payment.wallet_pay_fen, quota_pay_fen=payment.quota_pay_fen,
        cash_pay_fen=payment.cash_pay_fen, settled_at=payment.settled_at, occurred_at=occurred_at),
        source=ctx.source, trace_id=payment.setl_id, message_id=f"sup-{payment.setl_id}:{payment.version}")
    await audit.append(uow, "settlement.state", payment.setl_id,
                       {"state": payment.state, "version": payment.version, "psn_no": payment.psn_no,
                        "acct_pay_fen": payment.acct_pay_fen, "mulaid_pay_fen": payment.mulaid_pay_fen,
                        "cash_pay_fen": payment.cash_pay_fen}, occurred_at)


async def totals(view: UnitOfWork | ReadView, fixmedins_code: str, first_day: date, last_day: date,
                 payer_admdvs: str | None, insutype: str | None) -> dict[str, int]:
    """3201: the institution's settlements in effect, settled on those days (Asia/Shanghai), and how many of
    that period's were cancelled or reversed since."""
    s = SETTLEMENTS.c
    conditions = [s.fixmedins_code == fixmedins_code, s.settle_day >= first_day.isoformat(),
                  s.settle_day <= last_day.isoformat()]
    if payer_admdvs:
        conditions.append(s.payer_admdvs == payer_admdvs)
    if insutype:
        conditions.append(s.insutype == insutype)
    in_effect = sa.case((s.state == IN_EFFECT, 1), else_=0)
    row = (await view.execute(sa.select(
        sa.func.coalesce(sa.func.sum(in_effect), 0).label("count"),
        sa.func.coalesce(sa.func.sum(in_effect * s.medfee_fen), 0).label("medfee_fen"),
        sa.func.coalesce(sa.func.sum(in_effect * s.acct_pay_fen), 0).label("acct_pay_fen"),
        sa.func.coalesce(sa.func.sum(in_effect * s.mulaid_pay_fen), 0).label("mulaid_pay_fen"),
        sa.func.coalesce(sa.func.sum(in_effect * s.cash_pay_fen), 0).label("cash_pay_fen"),
        sa.func.count().label("all_count"),
    ).where(*conditions))).one()
    return {"count": int(row.count), "medfee_fen": int(row.medfee_fen), "acct_pay_fen": int(row.acct_pay_fen),
            "mulaid_pay_fen": int(row.mulaid_pay_fen), "cash_pay_fen": int(row.cash_pay_fen),
            "undone_count": int(row.all_count) - int(row.count)}
