"""Filings (异地就医备案) of this node's people (API.md "Filings"): a person declares long-term residence or a
temporary stay in another place; cross-province treatment there is then paid at the full ratio of the home
policy, without the `unfiled_ratio_cut` (service_layer/medical.py reads them at settlement time)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa

from services.province_node.adapters.medical_tables import FilingRow
from services.province_node.domain.errors import DomainError, NotFound
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import person_by_psn_no
from shared import audit
from shared.db import ReadView, UnitOfWork, for_update
from shared.tables import table

FILINGS = table(FilingRow)


@dataclass(frozen=True)
class FilingRequest:
    """`POST /v1/filings` (entrypoints/medical_api.FilingCreate): where, which kind, from when until when."""
    mdtrtarea_admdvs: str
    kind: Literal["resident", "temporary"]
    begndate: date
    enddate: date | None


def _view(row: Any) -> dict[str, Any]:
    return {"filing_id": row.filing_id, "state": row.state, "psn_no": row.psn_no,
            "mdtrtarea_admdvs": row.mdtrtarea_admdvs, "kind": row.kind, "begndate": row.begndate.isoformat(),
            "enddate": row.enddate.isoformat() if row.enddate else None,
            "created_at": row.created_at.isoformat(), "ended_at": row.ended_at.isoformat() if row.ended_at else None}


async def create_filing(ctx: NodeContext, uow: UnitOfWork, psn_no: str, body: FilingRequest) -> dict[str, Any]:
    person = await person_by_psn_no(uow, psn_no)
    if not person.insured:
        raise DomainError("INSURANCE_ENDED", "this person's insurance has ended")
    if body.enddate is not None and body.enddate < body.begndate:
        raise DomainError("INVALID_FILING", "enddate is before begndate")
    if body.mdtrtarea_admdvs[:2] == ctx.admdvs[:2]:
        raise DomainError("INVALID_FILING", "a filing is for treatment outside the home province")
    now = ctx.clock.now()
    filing_id = "F" + ctx.admdvs + uuid.uuid4().hex[:20].upper()
    await uow.execute(sa.insert(FILINGS).values(
        filing_id=filing_id, psn_no=psn_no, mdtrtarea_admdvs=body.mdtrtarea_admdvs, kind=body.kind,
        begndate=body.begndate, enddate=body.enddate, state="ACTIVE", created_at=now, ended_at=None))
    row = (await uow.execute(sa.select(FILINGS).where(FILINGS.c.filing_id == filing_id))).one()
    await audit.append(uow, "filing.state", filing_id, {"state": "ACTIVE", "psn_no": psn_no,
                                                        "mdtrtarea_admdvs": body.mdtrtarea_admdvs}, now)
    return _view(row)


async def list_filings(view: ReadView, psn_no: str) -> list[dict[str, Any]]:
    rows = await view.execute(sa.select(FILINGS).where(FILINGS.c.psn_no == psn_no)
                              .order_by(FILINGS.c.created_at, FILINGS.c.filing_id))
    return [_view(row) for row in rows]


async def end_filing(ctx: NodeContext, uow: UnitOfWork, psn_no: str, filing_id: str) -> dict[str, Any]:
    row = (await uow.execute(for_update(sa.select(FILINGS).where(FILINGS.c.filing_id == filing_id)))).first()
    if row is None or row.psn_no != psn_no:
        raise NotFound("FILING_NOT_FOUND", "no such filing of yours")
    if row.state == "ACTIVE":
        await uow.execute(sa.update(FILINGS).where(FILINGS.c.filing_id == filing_id, FILINGS.c.state == "ACTIVE")
                          .values(state="ENDED", ended_at=ctx.clock.now()))
        row = (await uow.execute(sa.select(FILINGS).where(FILINGS.c.filing_id == filing_id))).one()
        await audit.append(uow, "filing.state", filing_id, {"state": "ENDED", "psn_no": psn_no}, ctx.clock.now())
    return _view(row)
