"""Admin API of the gateway (operator token, Idempotency-Key): institutions and the catalogue."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from services.pharmacy_gateway.domain.wire import FIXMEDINS_CODE_SHAPE
from services.pharmacy_gateway.entrypoints.deps import CtxDep
from services.pharmacy_gateway.service_layer import admin
from shared.idempotency import run_idempotent
from shared.money import MAX_WIRE_YUAN
from shared.openapi import decimal_schema
from shared.web import require_operator

router = APIRouter(prefix="/v1/admin", tags=["admin"])


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


@router.post("/institutions", status_code=201, dependencies=[Depends(require_operator)], responses={
    200: {"description": "registered again: new credentials, the old paas_id stops working"}})
async def register_institution(request: Request, ctx: CtxDep, body: InstitutionRegistration) -> Response:
    response = await run_idempotent(request, ctx.db, "operator",
                                    lambda uow: admin.register_institution(ctx, uow, admin.Registration(
                                        **body.model_dump())),
                                    status=lambda registered: 201 if registered.created else 200,
                                    view=lambda registered: registered.institution)
    await ctx.registry.refresh(ctx.db)  # committed: the new credentials work from the next message on
    return response


@router.post("/catalogue:import", dependencies=[Depends(require_operator)])
async def import_catalogue(request: Request, ctx: CtxDep, body: CatalogueImport) -> Response:
    items = [admin.CatalogueItem(**item.model_dump()) for item in body.items]
    response = await run_idempotent(request, ctx.db, "operator",
                                    lambda uow: admin.import_catalogue(ctx, uow, body.admdvs, items), status=200)
    await ctx.registry.refresh(ctx.db)
    return response
