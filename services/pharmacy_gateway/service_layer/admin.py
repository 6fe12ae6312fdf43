"""Admin use cases of the gateway (operator token, API.md "Admin"): registering an institution, which issues
its paas_id and paas_token, and importing the catalogue that decides what accounts may pay for."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa

from services.pharmacy_gateway.domain.tif_auth import paas_token_for
from services.pharmacy_gateway.service_layer import medical_admin
from services.pharmacy_gateway.service_layer.context import (
    CATALOGUE,
    CATALOGUE_PART,
    INSTITUTIONS,
    INSTITUTIONS_PART,
    GatewayContext,
    stamp,
)
from shared.db import UnitOfWork

Kind = Literal["pharmacy", "hospital", "clinic"]


@dataclass(frozen=True)
class Registration:
    """`POST /v1/admin/institutions` (entrypoints/admin_api.InstitutionRegistration)."""
    fixmedins_code: str
    fixmedins_name: str
    admdvs: str
    kind: Kind  # hospitals and clinics send 22xx-24xx, pharmacies 2101-2103
    hosp_lv: Literal["1", "2", "3"]


@dataclass(frozen=True)
class CatalogueItem:
    """One entry of `POST /v1/admin/catalogue:import` (entrypoints/admin_api.CatalogueEntry)."""
    med_list_codg: str
    name: str
    category: Literal["drug", "device", "service", "daily_goods"]
    chrgitm_lv: Literal["01", "02", "03"]  # 甲/乙/丙 class (hospitals and clinics)
    selfpay_prop: Decimal  # 乙类 first self-pay share
    pric_uplmt_amt: Decimal | None  # price ceiling in yuan per unit


def token_hash(paas_token: str) -> str:
    return hashlib.sha256(paas_token.encode()).hexdigest()


@dataclass(frozen=True)
class Registered:
    institution: dict[str, Any]  # with its new credentials
    created: bool  # False: registered again (new credentials, the old paas_id stops working)


async def register_institution(ctx: GatewayContext, uow: UnitOfWork, body: Registration) -> Registered:
    """New credentials on every registration: registering an institution again rotates them (the old paas_id
    stops working at once). Replays of the same Idempotency-Key get the same answer (run_idempotent)."""
    paas_id = "PAAS" + uuid.uuid4().hex.upper()
    paas_token = paas_token_for(ctx.token_key, paas_id)
    # First: the stamp's row lock orders this registration after any other still open (context.stamp).
    version = await stamp(uow, INSTITUTIONS_PART)  # every replica takes the new credentials (the old stop)
    values = {"fixmedins_name": body.fixmedins_name, "admdvs": body.admdvs, "paas_id": paas_id,
              "paas_token_hash": token_hash(paas_token), "registered_at": ctx.clock.now(), "stamp": version}
    existing = (await uow.execute(sa.select(INSTITUTIONS.c.fixmedins_code).where(
        INSTITUTIONS.c.fixmedins_code == body.fixmedins_code))).first()
    if existing is None:
        await uow.execute(sa.insert(INSTITUTIONS).values(fixmedins_code=body.fixmedins_code, **values))
    else:
        await uow.execute(sa.update(INSTITUTIONS).where(
            INSTITUTIONS.c.fixmedins_code == body.fixmedins_code).values(**values))
    await medical_admin.record_profile(ctx, uow, body.fixmedins_code, body.kind, body.hosp_lv, version)
    return Registered(institution={
        "fixmedins_code": body.fixmedins_code, "fixmedins_name": body.fixmedins_name, "admdvs": body.admdvs,
        "kind": body.kind, "hosp_lv": body.hosp_lv, "paas_id": paas_id, "paas_token": paas_token},
        created=existing is None)


async def import_catalogue(ctx: GatewayContext, uow: UnitOfWork, admdvs: str | None,
                           items: list[CatalogueItem]) -> dict[str, Any]:
    """Upsert by med_list_codg; the last entry wins when a code repeats in one import. With `admdvs` the entries
    are for treatment in that province only (the medical catalogue), else national (both catalogues)."""
    now = ctx.clock.now()
    entries = {entry.med_list_codg: entry for entry in items}
    await medical_admin.import_medical_entries(ctx, uow, admdvs, list(entries.values()))
    await stamp(uow, CATALOGUE_PART)  # every replica reloads its catalogues
    if admdvs is not None:
        return {"imported": len(entries), "admdvs": admdvs, "by_category": _by_category(entries)}
    known = set((await uow.execute(sa.select(CATALOGUE.c.med_list_codg).where(
        CATALOGUE.c.med_list_codg.in_(list(entries))))).scalars())
    for code, entry in entries.items():
        values = {"name": entry.name, "category": entry.category, "updated_at": now}
        if code in known:
            await uow.execute(sa.update(CATALOGUE).where(CATALOGUE.c.med_list_codg == code).values(**values))
        else:
            await uow.execute(sa.insert(CATALOGUE).values(med_list_codg=code, **values))
    return {"imported": len(entries), "by_category": _by_category(entries)}


def _by_category(entries: dict[str, CatalogueItem]) -> dict[str, int]:
    by_category: dict[str, int] = {}
    for entry in entries.values():
        by_category[entry.category] = by_category.get(entry.category, 0) + 1
    return by_category
