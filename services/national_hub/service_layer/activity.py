"""One person's mutual-aid life in every province, for an investigator (API.md "Supervision": activity), and the
access log every such read and every alert decision goes into (PIPL: who looked at whom, when).

All of it is on the hub already: the binding registry, the transfers it routed, the settlements the gateway
reported, premiums and quota uses from the statistics facts, the alerts. Only names are not (the hub keeps keyed
hashes): the person's home node is asked for them, and a node that does not answer leaves them null."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import AccessLogEntry, AidFact, RiskAlert, SupervisedSettlement
from services.national_hub.adapters.tables import Binding, DirectoryPerson, HubTransfer
from services.national_hub.service_layer import holds
from services.national_hub.service_layer.context import HubContext
from shared.clock import SHANGHAI, iso
from shared.db import ReadView, in_unit_of_work
from shared.errors import ApiError
from shared.ids import InvalidIdNo, id_hash, mask_name
from shared.tables import table

DIRECTORY = table(DirectoryPerson)
BINDINGS = table(Binding)
TRANSFERS = table(HubTransfer)
SETTLEMENTS = table(SupervisedSettlement)
FACTS = table(AidFact)
ALERTS = table(RiskAlert)
ACCESS_LOG = table(AccessLogEntry)
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FAR_PAST = datetime(1970, 1, 1, tzinfo=SHANGHAI)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=SHANGHAI)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        if not _DAY.match(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(422, "INVALID_PERIOD", f"{name} is a date YYYY-MM-DD") from exc


def period(from_day: str | None, to_day: str | None) -> tuple[datetime, datetime]:
    """[start, end) in Asia/Shanghai days; `from` after `to` → 422."""
    first, last = _day(from_day, "from"), _day(to_day, "to")
    if first and last and first > last:
        raise ApiError(422, "INVALID_PERIOD", "from is after to")
    start = datetime.combine(first, time(), SHANGHAI) if first else FAR_PAST
    end = datetime.combine(last + timedelta(days=1), time(), SHANGHAI) if last else FAR_FUTURE
    return start, end


async def _names(ctx: HubContext, view: ReadView, psn_nos: set[str]) -> dict[str, str | None]:
    """Masked names from each person's home node (the hub holds none); None where a node does not answer."""
    if not psn_nos:
        return {}
    homes = {row.psn_no: row.insuplc_admdvs for row in (await view.execute(sa.select(
        DIRECTORY.c.psn_no, DIRECTORY.c.insuplc_admdvs).where(DIRECTORY.c.psn_no.in_(sorted(psn_nos))))).all()}
    out: dict[str, str | None] = {}
    for psn_no in sorted(psn_nos):
        out[psn_no] = None
        if ctx.nodes is None or psn_no not in homes:
            continue
        try:
            person = await ctx.nodes.post(homes[psn_no], "/internal/v1/pos/persons:lookup", {"psn_no": psn_no})
            out[psn_no] = mask_name(str(person["name"]))
        except Exception:
            out[psn_no] = None
    return out


async def person_activity(ctx: HubContext, id_no: str, from_day: str | None, to_day: str | None,
                          reviewer: str | None) -> dict[str, Any]:
    try:
        hashed = id_hash(ctx.settings.id_hash_key_bytes, id_no)
    except InvalidIdNo as exc:
        raise ApiError(422, "INVALID_ID_NO", "id_no fails the GB 11643 check") from exc
    return await _activity(ctx, DIRECTORY.c.id_hash == hashed, from_day, to_day, reviewer)


async def person_activity_by_psn(ctx: HubContext, psn_no: str, from_day: str | None, to_day: str | None,
                                 reviewer: str | None) -> dict[str, Any]:
    """The same, found by the person number an alert carries (the console links an alert to it)."""
    return await _activity(ctx, DIRECTORY.c.psn_no == psn_no, from_day, to_day, reviewer)


async def _activity(ctx: HubContext, who: Any, from_day: str | None, to_day: str | None,
                    reviewer: str | None) -> dict[str, Any]:
    start, end = period(from_day, to_day)
    async with ReadView(ctx.db) as view:
        person = (await view.execute(sa.select(DIRECTORY).where(who))).first()
        if person is None:
            raise ApiError(404, "PERSON_NOT_FOUND", "no such person in the directory")
        psn = person.psn_no
        bindings = (await view.execute(sa.select(BINDINGS).where(sa.or_(
            BINDINGS.c.giver_psn_no == psn, BINDINGS.c.relative_psn_no == psn)).order_by(BINDINGS.c.created_at))
                    ).all()
        transfers = (await view.execute(sa.select(TRANSFERS).where(
            sa.or_(TRANSFERS.c.giver_psn_no == psn, TRANSFERS.c.receiver_psn_no == psn),
            TRANSFERS.c.accepted_at >= start, TRANSFERS.c.accepted_at < end).order_by(TRANSFERS.c.accepted_at))
                     ).all()
        settlements = (await view.execute(sa.select(SETTLEMENTS).where(
            SETTLEMENTS.c.psn_no == psn, SETTLEMENTS.c.settled_at >= start, SETTLEMENTS.c.settled_at < end)
            .order_by(SETTLEMENTS.c.settled_at))).all()
        premiums = (await view.execute(sa.select(FACTS).where(
            FACTS.c.use == "premium", sa.or_(FACTS.c.payer_psn_no == psn, FACTS.c.person_key == psn),
            FACTS.c.at >= start, FACTS.c.at < end).order_by(FACTS.c.at))).all()
        alerts = (await view.execute(sa.select(ALERTS).where(sa.or_(
            ALERTS.c.subject == psn, ALERTS.c.details_json.contains(f'"{psn}"'))).order_by(ALERTS.c.created_at))
                  ).all()
        counterparties = {t.receiver_psn_no if t.giver_psn_no == psn else t.giver_psn_no for t in transfers}
        names = await _names(ctx, view, counterparties | {psn})
    relative_names = {b.relative_psn_no: b.relative_name_masked for b in bindings}

    def counterparty_name(psn_no: str) -> str | None:
        return names.get(psn_no) or relative_names.get(psn_no)

    async def log(uow: Any) -> None:
        await holds.log_access(ctx, uow, reviewer, "person.activity", person.id_no_masked)

    await in_unit_of_work(ctx.db, log)
    return {
        "person": {"psn_no": psn, "name_masked": names.get(psn), "id_no_masked": person.id_no_masked,
                   "insuplc_admdvs": person.insuplc_admdvs, "pooling_admdvs": person.pooling_admdvs,
                   "insured": person.insured},
        "bindings": [{"binding_id": b.binding_id, "role": "giver" if b.giver_psn_no == psn else "relative",
                      "giver_psn_no": b.giver_psn_no, "giver_admdvs": b.giver_admdvs,
                      "relative_psn_no": b.relative_psn_no, "relative_admdvs": b.relative_admdvs,
                      "relative_name_masked": b.relative_name_masked, "relation": b.relation, "state": b.state,
                      "created_at": iso(b.created_at), "ended_reason": b.ended_reason} for b in bindings],
        "transfers": [{"transfer_id": t.transfer_id, "role": "sent" if t.giver_psn_no == psn else "received",
                       "amount_fen": t.amount_fen, "state": t.state, "reason": t.reason,
                       "counterparty_psn_no": t.receiver_psn_no if t.giver_psn_no == psn else t.giver_psn_no,
                       "counterparty_name_masked": counterparty_name(
                           t.receiver_psn_no if t.giver_psn_no == psn else t.giver_psn_no),
                       "from_admdvs": t.giver_admdvs, "to_admdvs": t.receiver_admdvs,
                       "accepted_at": iso(t.accepted_at)} for t in transfers],
        "settlements": [{"setl_id": s.setl_id, "infno": s.infno, "use": s.use, "fixmedins_code": s.fixmedins_code,
                         "admdvs": s.institution_admdvs, "acct_pay_fen": s.acct_pay_fen,
                         "acct_mulaid_pay_fen": s.wallet_pay_fen + s.quota_pay_fen,
                         "wallet_pay_fen": s.wallet_pay_fen, "quota_pay_fen": s.quota_pay_fen,
                         "cash_fen": s.cash_pay_fen, "medfee_fen": s.medfee_fen, "time": iso(s.settled_at),
                         "cancelled": s.cancelled} for s in settlements],
        "premiums": [{"ref": f.ref, "kind": f.kind, "amount_fen": f.amount_fen, "from_admdvs": f.from_admdvs,
                      "to_admdvs": f.to_admdvs, "time": iso(f.at)} for f in premiums],
        "alerts": [holds.alert_view(a) for a in alerts],
    }


async def access_log(view: ReadView, limit: int) -> list[dict[str, Any]]:
    rows = (await view.execute(sa.select(ACCESS_LOG).order_by(ACCESS_LOG.c.id.desc()).limit(limit))).all()
    out = []
    for row in reversed(rows):
        entry: dict[str, Any] = {"time": iso(row.time), "action": row.action, "subject_masked": row.subject_masked}
        if row.reviewer:
            entry["reviewer"] = row.reviewer
        out.append(entry)
    return out
