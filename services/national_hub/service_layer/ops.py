"""What operators see and do: mutual-aid statistics as NHSA publishes them (person-times and amounts by month,
kind, use, province pair and scope), settlement windows that net the inter-province obligations. Risk rules and
alerts: risk.py and holds.py."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import AidFact, SettlementWindow
from services.national_hub.adapters.tables import ClearingObligation, DirectoryPerson
from services.national_hub.domain import statistics
from services.national_hub.domain.netting import Obligation, net_positions
from services.national_hub.service_layer.context import HubContext
from shared.clock import SHANGHAI, iso
from shared.db import ByKeys, Prepared, ReadView, UnitOfWork
from shared.errors import ApiError
from shared.tables import table

FACTS = table(AidFact)
WINDOWS = table(SettlementWindow)
OBLIGATIONS = table(ClearingObligation)
DIRECTORY = table(DirectoryPerson)
# Statements run for every credited transfer and settlement, built once (their compiled forms are reused).
_FACTS_SEEN = ByKeys(FACTS.c.ref, FACTS.c.ref)
_NEW_FACT = Prepared(sa.insert(FACTS))
_POOLING_OF = ByKeys(DIRECTORY.c.psn_no, DIRECTORY.c.psn_no, DIRECTORY.c.pooling_admdvs, DIRECTORY.c.insuplc_admdvs)
_PENDING_FACTS = "ops.pending_facts"  # UnitOfWork.state: this transaction's facts, written as it commits
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def month_of(at: datetime) -> str:
    return at.astimezone(SHANGHAI).strftime("%Y-%m")


async def record_use(uow: UnitOfWork, *, ref: str, from_admdvs: str, to_admdvs: str, use: str, person_key: str,
                     amount_fen: int, at: datetime, kind: str, scope: str | None,
                     payer_psn_no: str | None, scope_between_psns: tuple[str, str] | None = None) -> None:
    """One use of mutual aid (a negative amount: a cancel or return); `ref` makes a redelivered event count once.
    `scope_between_psns`: the scope is that of these two persons (`scope_between`), looked up with the others'.

    The facts of one transaction (a consumer's batch: hundreds of transfers and settlements) are written as it
    commits, with one look-up of the refs already counted, one of the persons' pooling regions and one insert for
    all of them (issue 9: three round trips per fact before)."""
    pending: dict[str, dict[str, Any]] | None = uow.state.get(_PENDING_FACTS)
    if pending is None:
        pending = uow.state[_PENDING_FACTS] = {}
        facts = pending
        uow.before_commit(lambda: _write_facts(uow, facts))
    if ref in pending:
        return
    pending[ref] = {"ref": ref, "month": month_of(at), "from_admdvs": from_admdvs, "to_admdvs": to_admdvs,
                    "use": use, "person_key": person_key, "amount_fen": amount_fen, "at": at, "kind": kind,
                    "scope": scope, "payer_psn_no": payer_psn_no, "_between": scope_between_psns}


async def _write_facts(uow: UnitOfWork, pending: dict[str, dict[str, Any]]) -> None:
    seen = {row.ref for row in await _FACTS_SEEN.rows(uow, list(pending))}
    facts = [fact for ref, fact in pending.items() if ref not in seen]
    psns = sorted({psn for fact in facts if fact["_between"] for psn in fact["_between"]})
    pooling = await _pooling_of(uow, psns)
    rows = []
    for fact in facts:
        between = fact.pop("_between")
        if between is not None:
            fact["scope"] = statistics.scope_of(pooling.get(between[0]), pooling.get(between[1]))
        rows.append(fact)
    pending.clear()
    for row in rows:  # with the transaction's other deferred rows, in one statement (UnitOfWork.defer)
        uow.defer(_NEW_FACT, row)


async def scope_between(uow: UnitOfWork, psn_a: str, psn_b: str) -> str:
    """same_pool / in_province / cross_province from the two persons' pooling regions in the directory."""
    pooling = await _pooling_of(uow, [psn_a, psn_b])
    return statistics.scope_of(pooling.get(psn_a), pooling.get(psn_b))


async def _pooling_of(uow: UnitOfWork, psns: list[str]) -> dict[str, str | None]:
    """Each known person's pooling region (the insured place where the directory has none)."""
    return {row.psn_no: row.pooling_admdvs or row.insuplc_admdvs for row in await _POOLING_OF.rows(uow, psns)}


async def stats(view: ReadView, from_month: str, to_month: str) -> dict[str, Any]:
    if not (_MONTH.match(from_month) and _MONTH.match(to_month)):
        raise ApiError(422, "INVALID_PERIOD", "from and to are months YYYY-MM")
    if from_month > to_month:
        raise ApiError(422, "INVALID_PERIOD", "from is after to")
    f = FACTS.c
    # Facts from before issue 12 carry no kind: a transfer, or a quota spend.
    kind = sa.func.coalesce(f.kind, sa.case((f.use == "transfer", "transfer"), else_="quota_use")).label("kind")
    times = sa.func.sum(sa.case((f.amount_fen > 0, 1), (f.amount_fen < 0, -1), else_=0)).label("person_times")
    rows = (await view.execute(
        sa.select(f.month, kind, f.use, f.from_admdvs, f.to_admdvs, f.scope, times,
                  sa.func.sum(f.amount_fen).label("amount_fen"))
        .where(f.month >= from_month, f.month <= to_month)
        .group_by(f.month, kind, f.use, f.from_admdvs, f.to_admdvs, f.scope)
        .order_by(f.month, kind, f.use, f.from_admdvs, f.to_admdvs, f.scope))).all()
    out = [{"month": r.month, "kind": r.kind, "use": r.use, "from_admdvs": r.from_admdvs,
            "to_admdvs": r.to_admdvs, "scope": r.scope, "person_times": int(r.person_times),
            "amount_fen": int(r.amount_fen),
            # Before issue 12 rows said whether a use crossed provinces; kept for existing readers.
            "cross_region": r.from_admdvs != r.to_admdvs} for r in rows]
    return {"from": from_month, "to": to_month, "rows": out, **statistics.totals(out)}


def _window_view(row: Any) -> dict[str, Any]:
    return {"window_id": row.window_id, "opened_at": iso(row.opened_at), "closed_at": iso(row.closed_at),
            "obligations": row.obligations, **json.loads(row.positions_json)}


async def list_windows(view: ReadView) -> list[dict[str, Any]]:
    rows = (await view.execute(sa.select(WINDOWS).order_by(WINDOWS.c.window_id))).all()
    return [_window_view(row) for row in rows]


async def close_current_window(ctx: HubContext, uow: UnitOfWork) -> dict[str, Any]:
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
    return _window_view(row)


async def on_transfer_credited(ctx: HubContext, uow: UnitOfWork, transfer: Any, credited_at: datetime) -> None:
    """Statistics for a credited transfer (called by the transfer routing when it decides): from the giver's
    province to the receiver's."""
    await record_use(uow, ref=f"TRANSFER:{transfer.transfer_id}", from_admdvs=transfer.giver_admdvs,
                     to_admdvs=transfer.receiver_admdvs, use="transfer", person_key=transfer.receiver_psn_no,
                     amount_fen=transfer.amount_fen, at=credited_at, kind=statistics.TRANSFER, scope=None,
                     payer_psn_no=transfer.giver_psn_no,
                     scope_between_psns=(transfer.giver_psn_no, transfer.receiver_psn_no))
