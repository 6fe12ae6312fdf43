"""What operators see and do: mutual-aid statistics as NHSA publishes them (person-times and amounts by
province pair, month and use), settlement windows that net the inter-province obligations, risk alerts."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import AidFact, RiskAlert, SettlementWindow
from services.national_hub.adapters.tables import Binding, ClearingObligation
from services.national_hub.domain import risk_rules
from services.national_hub.domain.netting import Obligation, net_positions
from services.national_hub.service_layer.context import HubContext
from shared.clock import SHANGHAI, iso
from shared.db import Prepared, ReadView, UnitOfWork
from shared.web import ApiError

FACTS = AidFact.__table__  # type: ignore[attr-defined]
WINDOWS = SettlementWindow.__table__  # type: ignore[attr-defined]
ALERTS = RiskAlert.__table__  # type: ignore[attr-defined]
OBLIGATIONS = ClearingObligation.__table__  # type: ignore[attr-defined]
BINDINGS = Binding.__table__  # type: ignore[attr-defined]
# Statements run for every credited transfer, built once (their compiled forms are reused).
_FACT_SEEN = Prepared(sa.select(FACTS.c.ref).where(FACTS.c.ref == sa.bindparam("ref")))
_NEW_FACT = Prepared(sa.insert(FACTS))
_BINDING_CREATED = sa.select(BINDINGS.c.created_at).where(BINDINGS.c.binding_id == sa.bindparam("binding_id"))
_RECENT_TRANSFERS_TO = sa.select(sa.func.count()).select_from(FACTS).where(
    FACTS.c.use == "transfer", FACTS.c.person_key == sa.bindparam("person"), FACTS.c.at >= sa.bindparam("since"))
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
POLICY = risk_rules.RiskPolicy()


def month_of(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m")


async def record_use(uow: UnitOfWork, *, ref: str, from_admdvs: str, to_admdvs: str, use: str, person_key: str,
                     amount_fen: int, at: datetime) -> None:
    """One use of mutual aid; `ref` makes a redelivered event count once."""
    if (await uow.execute(_FACT_SEEN, {"ref": ref})).first():
        return
    await uow.execute(_NEW_FACT, {"ref": ref, "month": month_of(at), "from_admdvs": from_admdvs,
                                  "to_admdvs": to_admdvs, "use": use, "person_key": person_key,
                                  "amount_fen": amount_fen, "at": at})


async def stats(view: ReadView, from_month: str, to_month: str) -> dict[str, Any]:
    if not (_MONTH.match(from_month) and _MONTH.match(to_month)) or from_month > to_month:
        raise ApiError(422, "INVALID_PERIOD", "from and to are months YYYY-MM, from <= to")
    rows = (await view.execute(
        sa.select(FACTS.c.month, FACTS.c.from_admdvs, FACTS.c.to_admdvs, FACTS.c.use,
                  sa.func.count().label("person_times"), sa.func.sum(FACTS.c.amount_fen).label("amount_fen"))
        .where(FACTS.c.month >= from_month, FACTS.c.month <= to_month)
        .group_by(FACTS.c.month, FACTS.c.from_admdvs, FACTS.c.to_admdvs, FACTS.c.use)
        .order_by(FACTS.c.month, FACTS.c.from_admdvs, FACTS.c.to_admdvs, FACTS.c.use))).all()
    out = [{"month": r.month, "from_admdvs": r.from_admdvs, "to_admdvs": r.to_admdvs, "use": r.use,
            "cross_region": r.from_admdvs != r.to_admdvs, "person_times": int(r.person_times),
            "amount_fen": int(r.amount_fen)} for r in rows]
    by_use: dict[str, dict[str, int]] = {}
    for row in out:
        bucket = by_use.setdefault(str(row["use"]), {"person_times": 0, "amount_fen": 0})
        bucket["person_times"] += int(row["person_times"])
        bucket["amount_fen"] += int(row["amount_fen"])
    return {"from": from_month, "to": to_month, "rows": out, "totals_by_use": by_use,
            "person_times": sum(int(r["person_times"]) for r in out),
            "amount_fen": sum(int(r["amount_fen"]) for r in out)}


def _window_view(row: Any) -> dict[str, Any]:
    return {"window_id": row.window_id, "opened_at": iso(row.opened_at), "closed_at": iso(row.closed_at),
            "obligations": row.obligations, **json.loads(row.positions_json)}


async def list_windows(view: ReadView) -> list[dict[str, Any]]:
    rows = (await view.execute(sa.select(WINDOWS).order_by(WINDOWS.c.window_id))).all()
    return [_window_view(row) for row in rows]


async def close_current_window(ctx: HubContext, uow: UnitOfWork) -> tuple[int, Any]:
    """Net every obligation not yet in a window, freeze the result, and open the next window. Two closes at
    once (two operators, two replicas) take turns, so no obligation is netted in two windows."""
    await uow.lock_name("settlement-window-close")
    now = ctx.clock.now()
    last = (await uow.execute(sa.select(sa.func.max(WINDOWS.c.closed_at)))).scalar()
    opened_at = last or (await uow.execute(sa.select(sa.func.min(OBLIGATIONS.c.created_at)))).scalar() or now
    open_rows = (await uow.execute(sa.select(OBLIGATIONS.c.id, OBLIGATIONS.c.debtor_admdvs,
                                             OBLIGATIONS.c.creditor_admdvs, OBLIGATIONS.c.amount_fen)
                                   .where(OBLIGATIONS.c.window_id.is_(None)))).all()
    per_province, pairs = net_positions(Obligation(r.debtor_admdvs, r.creditor_admdvs, r.amount_fen)
                                        for r in open_rows)
    positions = {"net_by_province": [{"admdvs": k, "net_fen": v} for k, v in per_province.items()],
                 "net_by_pair": [{"payer_admdvs": p.payer_admdvs, "payee_admdvs": p.payee_admdvs,
                                  "net_fen": p.net_fen} for p in pairs],
                 "sum_fen": sum(per_province.values())}
    window_id = (await uow.execute(sa.insert(WINDOWS).values(
        opened_at=opened_at, closed_at=now, obligations=len(open_rows), positions_json=json.dumps(positions))
        .returning(WINDOWS.c.window_id))).scalar_one()
    if open_rows:
        claimed = await uow.execute(sa.update(OBLIGATIONS).where(
            OBLIGATIONS.c.id.in_([r.id for r in open_rows]), OBLIGATIONS.c.window_id.is_(None))
            .values(window_id=window_id))
        if claimed.rowcount != len(open_rows):
            # Cannot happen under the lock above; if it ever did, the whole close rolls back rather than net an
            # obligation in two windows (settled twice between provinces).
            raise RuntimeError("obligations already claimed by another window: close refused")
    row = (await uow.execute(sa.select(WINDOWS).where(WINDOWS.c.window_id == window_id))).one()
    return 200, _window_view(row)


# ------------------------------------------------------------------------------------------------- risk


async def raise_alert(ctx: HubContext, uow: UnitOfWork, *, rule: str, subject: str, ref: str,
                      details: dict[str, Any]) -> None:
    if (await uow.execute(sa.select(ALERTS.c.alert_id).where(ALERTS.c.ref == ref))).first():
        return
    await uow.execute(sa.insert(ALERTS).values(alert_id="A" + uuid.uuid4().hex, rule=rule, subject=subject, ref=ref,
                                               details_json=json.dumps(details, ensure_ascii=False), state="OPEN",
                                               created_at=ctx.clock.now()))


async def on_transfer_credited(ctx: HubContext, uow: UnitOfWork, transfer: Any, credited_at: datetime) -> None:
    """Statistics and risk for a credited transfer (called by the transfer routing when it decides)."""
    await record_use(uow, ref=f"TRANSFER:{transfer.transfer_id}", from_admdvs=transfer.giver_admdvs,
                     to_admdvs=transfer.receiver_admdvs, use="transfer", person_key=transfer.receiver_psn_no,
                     amount_fen=transfer.amount_fen, at=credited_at)
    binding = (await uow.execute(_BINDING_CREATED, {"binding_id": transfer.binding_id})).first()
    await check_credited_transfer(ctx, uow, transfer, binding.created_at if binding else None)


async def check_credited_transfer(ctx: HubContext, uow: UnitOfWork, transfer: Any,
                                  binding_created_at: datetime | None) -> None:
    now = ctx.clock.now()
    since = now.timestamp() - POLICY.rapid_transfers_window_s
    recent = (await uow.execute(_RECENT_TRANSFERS_TO, {
        "person": transfer.receiver_psn_no, "since": datetime.fromtimestamp(since, tz=now.tzinfo)})).scalar_one()
    if risk_rules.rapid_transfers(POLICY, int(recent)):
        await raise_alert(ctx, uow, rule="RAPID_TRANSFERS", subject=transfer.receiver_psn_no,
                          ref=f"RAPID:{transfer.transfer_id}",
                          details={"credited_in_window": int(recent), "window_s": POLICY.rapid_transfers_window_s})
    if binding_created_at and risk_rules.new_binding_drain(POLICY, binding_created_at, now, transfer.amount_fen):
        await raise_alert(ctx, uow, rule="NEW_BINDING_DRAIN", subject=transfer.binding_id,
                          ref=f"DRAIN:{transfer.transfer_id}",
                          details={"transfer_id": transfer.transfer_id, "amount_fen": transfer.amount_fen,
                                   "binding_created_at": iso(binding_created_at)})


async def check_remote_purchase(ctx: HubContext, uow: UnitOfWork, *, setl_ref: str, psn_no: str,
                                amount_fen: int, payer_admdvs: str, pharmacy_admdvs: str) -> None:
    if risk_rules.large_remote_purchase(POLICY, amount_fen):
        await raise_alert(ctx, uow, rule="LARGE_REMOTE_PURCHASE", subject=psn_no, ref=f"REMOTE:{setl_ref}",
                          details={"amount_fen": amount_fen, "payer_admdvs": payer_admdvs,
                                   "pharmacy_admdvs": pharmacy_admdvs})


def _alert_view(row: Any) -> dict[str, Any]:
    return {"alert_id": row.alert_id, "rule": row.rule, "subject": row.subject, "state": row.state,
            "created_at": iso(row.created_at), "details": json.loads(row.details_json),
            "resolved_at": iso(row.resolved_at) if row.resolved_at else None, "resolution": row.resolution}


async def list_alerts(view: ReadView, state: str | None) -> list[dict[str, Any]]:
    query = sa.select(ALERTS).order_by(ALERTS.c.created_at)
    if state:
        query = query.where(ALERTS.c.state == state.upper())
    return [_alert_view(row) for row in (await view.execute(query)).all()]


async def resolve_alert(ctx: HubContext, uow: UnitOfWork, alert_id: str, resolution: str | None) -> tuple[int, Any]:
    row = (await uow.execute(sa.select(ALERTS).where(ALERTS.c.alert_id == alert_id))).first()
    if row is None:
        raise ApiError(404, "ALERT_NOT_FOUND", "no such alert")
    if row.state == "OPEN":
        await uow.execute(sa.update(ALERTS).where(ALERTS.c.alert_id == alert_id).values(
            state="RESOLVED", resolved_at=ctx.clock.now(), resolution=(resolution or "")[:200] or None))
        row = (await uow.execute(sa.select(ALERTS).where(ALERTS.c.alert_id == alert_id))).one()
    return 200, _alert_view(row)
