"""Admin use cases of the gateway (operator token, API.md "Admin"): registering an institution, which issues
its paas_id and paas_token, and importing the catalogue that decides what accounts may pay for."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from services.pharmacy_gateway.domain.tif_auth import paas_token_for
from services.pharmacy_gateway.domain.wire import FIXMEDINS_CODE_SHAPE
from services.pharmacy_gateway.service_layer import medical_admin
from services.pharmacy_gateway.service_layer.context import CATALOGUE, INSTITUTIONS, GatewayContext
from shared.db import UnitOfWork
from shared.money import MAX_WIRE_YUAN
from shared.openapi import decimal_schema


class InstitutionRegistration(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fixmedins_code: str = Field(pattern=FIXMEDINS_CODE_SHAPE.pattern)
    fixmedins_name: str = Field(min_length=1, max_length=100)
    admdvs: str = Field(pattern=r"^[0-9]{6}$")
    # Hospitals and clinics (API.md "Medical institutions"): they send 22xx-24xx, pharmacies 2101-2103.
    kind: Literal["pharmacy", "hospital", "clinic"] = "pharmacy"
    hosp_lv: Literal["1", "2", "3"] = "1"


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    med_list_codg: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=200)
    category: Literal["drug", "device", "service", "daily_goods"]
    # For hospitals and clinics (API.md "Medical institutions"): 甲/乙/丙 class, 乙类 first self-pay share,
    # price ceiling in yuan per unit (at most two decimals).
    chrgitm_lv: Literal["01", "02", "03"] = "01"
    selfpay_prop: Decimal = Field(default=Decimal(0), ge=0, le=1, decimal_places=4,
                                  json_schema_extra=decimal_schema(4, 1))
    pric_uplmt_amt: Decimal | None = Field(default=None, ge=0, le=MAX_WIRE_YUAN, decimal_places=2,
                                           json_schema_extra=decimal_schema(2, MAX_WIRE_YUAN))


class CatalogueImport(BaseModel):
    items: list[CatalogueEntry] = Field(min_length=1, max_length=20000)
    # A province code: entries for treatment in that province (就医地目录); absent: national entries.
    admdvs: str | None = Field(default=None, pattern=r"^[1-9][0-9]0000$")


def token_hash(paas_token: str) -> str:
    return hashlib.sha256(paas_token.encode()).hexdigest()


@dataclass(frozen=True)
class Registered:
    institution: dict[str, Any]  # with its new credentials
    created: bool  # False: registered again (new credentials, the old paas_id stops working)


async def register_institution(ctx: GatewayContext, uow: UnitOfWork, body: InstitutionRegistration) -> Registered:
    """New credentials on every registration: registering an institution again rotates them (the old paas_id
    stops working at once). Replays of the same Idempotency-Key get the same answer (run_idempotent)."""
    paas_id = "PAAS" + uuid.uuid4().hex.upper()
    paas_token = paas_token_for(ctx.token_key, paas_id)
    values = {"fixmedins_name": body.fixmedins_name, "admdvs": body.admdvs, "paas_id": paas_id,
              "paas_token_hash": token_hash(paas_token), "registered_at": ctx.clock.now()}
    existing = (await uow.execute(sa.select(INSTITUTIONS.c.fixmedins_code).where(
        INSTITUTIONS.c.fixmedins_code == body.fixmedins_code))).first()
    if existing is None:
        await uow.execute(sa.insert(INSTITUTIONS).values(fixmedins_code=body.fixmedins_code, **values))
    else:
        await uow.execute(sa.update(INSTITUTIONS).where(
            INSTITUTIONS.c.fixmedins_code == body.fixmedins_code).values(**values))
    await medical_admin.record_profile(ctx, uow, body.fixmedins_code, body.kind, body.hosp_lv)
    return Registered(institution={
        "fixmedins_code": body.fixmedins_code, "fixmedins_name": body.fixmedins_name, "admdvs": body.admdvs,
        "kind": body.kind, "hosp_lv": body.hosp_lv, "paas_id": paas_id, "paas_token": paas_token},
        created=existing is None)


async def import_catalogue(ctx: GatewayContext, uow: UnitOfWork, body: CatalogueImport) -> dict[str, Any]:
    """Upsert by med_list_codg; the last entry wins when a code repeats in one import. With `admdvs` the entries
    are for treatment in that province only (the medical catalogue), else national (both catalogues)."""
    now = ctx.clock.now()
    entries = {entry.med_list_codg: entry for entry in body.items}
    await medical_admin.import_medical_entries(ctx, uow, body.admdvs, list(entries.values()))
    if body.admdvs is not None:
        return {"imported": len(entries), "admdvs": body.admdvs, "by_category": _by_category(entries)}
    known = set((await uow.execute(sa.select(CATALOGUE.c.med_list_codg).where(
        CATALOGUE.c.med_list_codg.in_(list(entries))))).scalars())
    for code, entry in entries.items():
        values = {"name": entry.name, "category": entry.category, "updated_at": now}
        if code in known:
            await uow.execute(sa.update(CATALOGUE).where(CATALOGUE.c.med_list_codg == code).values(**values))
        else:
            await uow.execute(sa.insert(CATALOGUE).values(med_list_codg=code, **values))
    return {"imported": len(entries), "by_category": _by_category(entries)}


def _by_category(entries: dict[str, CatalogueEntry]) -> dict[str, int]:
    by_category: dict[str, int] = {}
    for entry in entries.values():
        by_category[entry.category] = by_category.get(entry.category, 0) + 1
    return by_category
