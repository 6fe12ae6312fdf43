"""The gateway's view of hospital and clinic settlements, kept in step with the payer's node as for pharmacies
(service_layer/settlements.py): the newest version heard of wins, and whenever a cross-province settlement
starts or stops taking effect, `pos.settlement.recorded.v1` (use outpatient|inpatient, with the fund's part)
goes to the hub through the outbox in the same transaction. The payer's province owes the institution's
`fund_pay_sumamt + acct_pay + acct_mulaid_pay` (API.md "Operator API", obligations); the cash part went from
the patient to the institution. 3201 sums the ones in effect."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa

from services.pharmacy_gateway.adapters.medical_tables import MedicalSettlementRecord
from services.pharmacy_gateway.service_layer.context import GatewayContext, InstitutionView
from shared.clock import SHANGHAI
from shared.contracts import topics
from shared.contracts.events import PosSettlementRecorded, SettlementReported
from shared.contracts.medical_api import MedicalSettlement
from shared.db import ReadView, UnitOfWork
from shared.outbox import emit
from shared.regions import province_of
from shared.tables import table

RECORDS = table(MedicalSettlementRecord)
IN_EFFECT = "SETTLED"


async def record_of(view: UnitOfWork | ReadView, setl_id: str) -> Any:
    return (await view.execute(sa.select(RECORDS).where(RECORDS.c.setl_id == setl_id))).first()


async def record(ctx: GatewayContext, uow: UnitOfWork, settlement: MedicalSettlement, *,
                 institution: InstitutionView, payer_admdvs: str, msgid: str, infno: str) -> None:
    """Take in the node's latest word on `settlement` (inside the message's finishing transaction)."""
    now = ctx.clock.now()
    if uow.shares_rows:
        # A settle and its reversal answered on two replicas at once: one after the other.
        await uow.lock_name(f"medical-settlement|{settlement.setl_id}")
    row = await record_of(uow, settlement.setl_id)
    if row is not None and settlement.version <= row.version:
        return  # older news than what the gateway already holds
    was_in_effect = row is not None and row.state == IN_EFFECT
    if row is None:
        await uow.execute(sa.insert(RECORDS).values(
            setl_id=settlement.setl_id, msgid=settlement.msgid, mdtrt_id=settlement.mdtrt_id,
            fixmedins_code=settlement.fixmedins_code, institution_admdvs=institution.admdvs,
            psn_no=settlement.psn_no, payer_admdvs=payer_admdvs, insutype=settlement.insutype,
            setting=settlement.setting, state=settlement.state, version=settlement.version,
            medfee_fen=settlement.medfee_fen, fund_pay_fen=settlement.hifp_pay_fen,
            acct_pay_fen=settlement.acct_pay_fen, mulaid_pay_fen=settlement.mulaid_pay_fen,
            cash_pay_fen=settlement.cash_pay_fen,
            settle_day=settlement.settled_at.astimezone(SHANGHAI).date().isoformat(),
            settled_at=settlement.settled_at, updated_at=now))
    else:
        await uow.execute(sa.update(RECORDS).where(RECORDS.c.setl_id == settlement.setl_id).values(
            state=settlement.state, version=settlement.version, updated_at=now))
    in_effect = settlement.state == IN_EFFECT
    if was_in_effect == in_effect:
        return
    # Supervision and statistics (issue 12) learn of every change of effect, in- and cross-province.
    await emit(uow, topics.HUB_INBOUND, settlement.setl_id, SettlementReported(
        setl_id=settlement.setl_id, version=settlement.version, effect="CHARGE" if in_effect else "REFUND",
        use=settlement.setting, infno=infno, fixmedins_code=settlement.fixmedins_code,
        institution_admdvs=institution.admdvs, payer_admdvs=payer_admdvs, psn_no=settlement.psn_no,
        medfee_fen=settlement.medfee_fen, acct_pay_fen=settlement.acct_pay_fen,
        wallet_pay_fen=settlement.wallet_pay_fen, quota_pay_fen=settlement.quota_pay_fen,
        cash_pay_fen=settlement.cash_pay_fen, settled_at=settlement.settled_at, occurred_at=now),
        source=ctx.source, trace_id=settlement.setl_id, message_id=f"sup-{settlement.setl_id}:{settlement.version}")
    cleared_fen = settlement.cleared_fen
    if cleared_fen == 0 or province_of(institution.admdvs) == province_of(payer_admdvs):
        return
    ref = f"{settlement.setl_id}:{settlement.version}"
    await emit(uow, topics.HUB_INBOUND, settlement.setl_id, PosSettlementRecorded(
        ref=ref, effect="CHARGE" if in_effect else "REFUND", setl_id=settlement.setl_id, version=settlement.version,
        msgid=msgid, fixmedins_code=settlement.fixmedins_code, pharmacy_admdvs=institution.admdvs,
        payer_admdvs=payer_admdvs, psn_no=settlement.psn_no, acct_pay_fen=settlement.acct_pay_fen,
        mulaid_pay_fen=settlement.mulaid_pay_fen, fund_pay_fen=settlement.hifp_pay_fen, amount_fen=cleared_fen,
        use=settlement.setting, occurred_at=now),
        source=ctx.source, trace_id=settlement.setl_id, message_id=f"med-{ref}")


async def totals(view: ReadView, fixmedins_code: str, first_day: date, last_day: date, payer_admdvs: str | None,
                 insutype: str | None) -> dict[str, int]:
    """3201 for a hospital or clinic: its settlements in effect, settled on those days (Asia/Shanghai), and how
    many of that period's were cancelled or reversed since."""
    s = RECORDS.c
    conditions = [s.fixmedins_code == fixmedins_code, s.settle_day >= first_day.isoformat(),
                  s.settle_day <= last_day.isoformat()]
    if payer_admdvs:
        conditions.append(s.payer_admdvs == payer_admdvs)
    if insutype:
        conditions.append(s.insutype == insutype)
    in_effect = sa.case((s.state == IN_EFFECT, 1), else_=0)
    row = (await view.execute(sa.select(
        sa.func.coalesce(sa.func.sum(in_effect), 0).label("count"),
        *(sa.func.coalesce(sa.func.sum(in_effect * column), 0).label(column.name)
          for column in (s.medfee_fen, s.fund_pay_fen, s.acct_pay_fen, s.mulaid_pay_fen, s.cash_pay_fen)),
        sa.func.count().label("all_count"),
    ).where(*conditions))).one()
    return {"count": int(row.count), "medfee_fen": int(row.medfee_fen), "fund_pay_fen": int(row.fund_pay_fen),
            "acct_pay_fen": int(row.acct_pay_fen), "mulaid_pay_fen": int(row.mulaid_pay_fen),
            "cash_pay_fen": int(row.cash_pay_fen), "undone_count": int(row.all_count) - int(row.count)}
