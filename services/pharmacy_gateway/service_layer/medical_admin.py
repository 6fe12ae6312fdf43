"""Admin side of hospitals and clinics at the gateway (API.md "Medical institutions"): an institution's kind
and level, and the medical catalogue (national entries and entries per province of treatment)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from services.pharmacy_gateway.adapters.medical_tables import NATIONAL_SCOPE
from services.pharmacy_gateway.service_layer.context import MEDICAL_CATALOGUE, PROFILES, GatewayContext
from shared.db import ReadView, UnitOfWork
from shared.money import yuan_to_fen

if TYPE_CHECKING:
    from services.pharmacy_gateway.service_layer.admin import CatalogueItem


async def record_profile(ctx: GatewayContext, uow: UnitOfWork, fixmedins_code: str, kind: str, hosp_lv: str,
                         stamp: int) -> None:
    """`stamp`: the registration's `institutions` registry stamp (service_layer/context.py)."""
    values = {"kind": kind, "hosp_lv": hosp_lv, "updated_at": ctx.clock.now(), "stamp": stamp}
    changed = await uow.execute(sa.update(PROFILES).where(PROFILES.c.fixmedins_code == fixmedins_code)
                                .values(**values))
    if changed.rowcount == 0:
        # Two registrations of one code at once (replicas): the loser's insert fails the key and is run again.
        await uow.execute(sa.insert(PROFILES).values(fixmedins_code=fixmedins_code, **values))


async def import_medical_entries(ctx: GatewayContext, uow: UnitOfWork, admdvs: str | None,
                                 entries: list[CatalogueItem]) -> None:
    scope = admdvs or NATIONAL_SCOPE
    now = ctx.clock.now()
    codes = [entry.med_list_codg for entry in entries]
    await uow.execute(sa.delete(MEDICAL_CATALOGUE).where(MEDICAL_CATALOGUE.c.scope == scope,
                                                         MEDICAL_CATALOGUE.c.med_list_codg.in_(codes)))
    rows: list[dict[str, Any]] = [{
        "scope": scope, "med_list_codg": entry.med_list_codg, "name": entry.name, "category": entry.category,
        "chrgitm_lv": entry.chrgitm_lv, "selfpay_prop": str(entry.selfpay_prop),
        "pric_uplmt_fen": None if entry.pric_uplmt_amt is None else yuan_to_fen(entry.pric_uplmt_amt),
        "updated_at": now} for entry in entries]
    if rows:
        await uow.execute(sa.insert(MEDICAL_CATALOGUE), rows)


async def kind_of(ctx: GatewayContext, fixmedins_code: str) -> tuple[str, str]:
    """(kind, hosp_lv) of an institution; read through to the table for one registered through another replica
    since this one's registry was loaded."""
    known = ctx.registry.profiles.get(fixmedins_code)
    if known is None and not ctx.db.inline:
        async with ReadView(ctx.db) as view:
            row = (await view.execute(sa.select(PROFILES).where(PROFILES.c.fixmedins_code == fixmedins_code))).first()
        if row is not None:
            known = ctx.registry.profiles[fixmedins_code] = (row.kind, row.hosp_lv)
    return known or ("pharmacy", "1")
