"""Admin use cases of the gateway (operator token, API.md "Admin"): registering an institution, which issues
its paas_id and paas_token, and importing the catalogue that decides what accounts may pay for."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from services.pharmacy_gateway.domain.tif_auth import paas_token_for
from services.pharmacy_gateway.domain.wire import FIXMEDINS_CODE_SHAPE
from services.pharmacy_gateway.service_layer.context import CATALOGUE, INSTITUTIONS, GatewayContext
from shared.db import UnitOfWork


class InstitutionRegistration(BaseModel):
    model_config = ConfigDict(extra="ignore")

    fixmedins_code: str = Field(pattern=FIXMEDINS_CODE_SHAPE.pattern)
    fixmedins_name: str = Field(min_length=1, max_length=100)
    admdvs: str = Field(pattern=r"^[0-9]{6}$")


class CatalogueEntry(BaseModel):
    model_config = ConfigDict(extra="ignore")

    med_list_codg: str = Field(min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=200)
    category: Literal["drug", "device", "service", "daily_goods"]


class CatalogueImport(BaseModel):
    items: list[CatalogueEntry] = Field(min_length=1, max_length=20000)


def token_hash(paas_token: str) -> str:
    return hashlib.sha256(paas_token.encode()).hexdigest()


async def register_institution(ctx: GatewayContext, uow: UnitOfWork,
                               body: InstitutionRegistration) -> tuple[int, Any]:
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
    return (201 if existing is None else 200), {
        "fixmedins_code": body.fixmedins_code, "fixmedins_name": body.fixmedins_name, "admdvs": body.admdvs,
        "paas_id": paas_id, "paas_token": paas_token}


async def import_catalogue(ctx: GatewayContext, uow: UnitOfWork, body: CatalogueImport) -> tuple[int, Any]:
    """Upsert by med_list_codg; the last entry wins when a code repeats in one import."""
    now = ctx.clock.now()
    entries = {entry.med_list_codg: entry for entry in body.items}
    known = set((await uow.execute(sa.select(CATALOGUE.c.med_list_codg).where(
        CATALOGUE.c.med_list_codg.in_(list(entries))))).scalars())
    for code, entry in entries.items():
        values = {"name": entry.name, "category": entry.category, "updated_at": now}
        if code in known:
            await uow.execute(sa.update(CATALOGUE).where(CATALOGUE.c.med_list_codg == code).values(**values))
        else:
            await uow.execute(sa.insert(CATALOGUE).values(med_list_codg=code, **values))
    by_category: dict[str, int] = {}
    for entry in entries.values():
        by_category[entry.category] = by_category.get(entry.category, 0) + 1
    return 200, {"imported": len(entries), "by_category": by_category}
