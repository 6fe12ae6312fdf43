"""Medical routes of a province node: the province's policy (operator token, API.md "Medical institutions"),
filings (citizen, API.md "Filings"), and the internal medical API the gateway calls while a HIS waits
(internal token, on the fast lane like the POS API; bodies in shared/contracts/medical_api.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.datastructures import Headers

from services.province_node.domain.medical_policy import MedicalPolicy, PolicyInvalid
from services.province_node.entrypoints.auth import CitizenDep
from services.province_node.entrypoints.deps import CtxDep
from services.province_node.entrypoints.pos_api import internal_only
from services.province_node.service_layer import filings, medical
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.filings import FilingRequest
from shared.contracts.medical_api import MedicalCall, MedicalResult
from shared.db import ReadView, in_unit_of_work
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN
from shared.openapi import decimal_schema, json_body, refusal
from shared.web import ApiError, FastDoc, FastRoute, parse_body, require_operator

router = APIRouter(tags=["medical"])


def _day_text(value: object) -> object:
    """A day is the text YYYY-MM-DD (its schema: a string, format date), never a number of seconds."""
    if not isinstance(value, str | date):
        raise ValueError("a date is the text YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_day_text)]


class FilingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mdtrtarea_admdvs: str = Field(pattern=r"^[1-9][0-9]{5}$", description="a province or a city (6 digits)")
    kind: Literal["resident", "temporary"]
    begndate: Day
    enddate: Day | None = None

_POLICY_EXAMPLE = {"rules": [{"insutype": "310", "setting": "inpatient", "hosp_lv": "3", "deductible_fen": 80000,
                              "ratio": "0.85", "annual_cap_fen": 50000000}], "unfiled_ratio_cut": "0.10"}


@router.get("/v1/admin/medical-policy", dependencies=[Depends(require_operator)])
async def get_policy(ctx: CtxDep) -> dict[str, Any]:
    """The policy settlements use now: the province's documented default until an operator replaces it."""
    async with ReadView(ctx.db) as view:
        policy = await medical.current_policy(ctx, view)
    return {"admdvs": ctx.admdvs, **policy.to_json()}


def _ratio() -> dict[str, Any]:
    schema: dict[str, Any] = {}
    decimal_schema(4, 1, numbers=False)(schema)  # parse_ratio: text of at most 4 decimals in [0, 1], or 0 or 1
    return schema


_AMOUNT = {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_FEN}
# What MedicalPolicy.from_json takes (its refusals are INVALID_POLICY), written down.
POLICY_SCHEMA = {"type": "object", "required": ["rules"], "properties": {
    "rules": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["insutype", "setting", "hosp_lv", "deductible_fen", "ratio", "annual_cap_fen"],
        "properties": {"insutype": {"enum": ["310", "390", 310, 390]},
                       "setting": {"enum": ["outpatient", "inpatient"]},
                       "hosp_lv": {"enum": ["1", "2", "3", 1, 2, 3]},
                       "deductible_fen": _AMOUNT, "ratio": _ratio(), "annual_cap_fen": _AMOUNT}}},
    "unfiled_ratio_cut": _ratio()}}


@router.put("/v1/admin/medical-policy", dependencies=[Depends(require_operator)],
            openapi_extra=json_body(POLICY_SCHEMA),
            responses={422: refusal("INVALID_POLICY", when="two rules for the same insutype, setting and hosp_lv")})
async def put_policy(request: Request, ctx: CtxDep,
                     body: Annotated[dict[str, Any], Body(examples=[_POLICY_EXAMPLE])]) -> Response:
    """Replace the policy; it applies to settlements after this answer (each rule: insutype 310|390, setting
    outpatient|inpatient, hosp_lv 1|2|3, deductible_fen ≥ 0, ratio "0".."1", annual_cap_fen ≥ 0)."""
    try:
        policy = MedicalPolicy.from_json(body)
    except PolicyInvalid as exc:
        raise ApiError(422, "INVALID_POLICY", str(exc)) from exc
    return await run_idempotent(request, ctx.db, "operator", lambda uow: medical.put_policy(ctx, uow, policy),
                                status=200)


@router.post("/v1/filings", status_code=201, responses={422: refusal(
    "INVALID_FILING", "INSURANCE_ENDED", when="enddate before begndate, a place in the home province")})
async def create_filing(request: Request, ctx: CtxDep, body: FilingCreate, claims: CitizenDep) -> Response:
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: filings.create_filing(ctx, uow, claims.psn_no, FilingRequest(
                                    **body.model_dump())), status=201)


@router.get("/v1/filings")
async def list_filings(ctx: CtxDep, claims: CitizenDep) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await filings.list_filings(view, claims.psn_no)


@router.delete("/v1/filings/{filing_id}")
async def end_filing(request: Request, ctx: CtxDep, filing_id: str, claims: CitizenDep) -> Response:
    return await run_idempotent(request, ctx.db, claims.psn_no,
                                lambda uow: filings.end_filing(ctx, uow, claims.psn_no, filing_id), status=200)


# ------------------------------------------------------------------------------------------------ internal

PREFIX = "/internal/v1/medical"


async def _apply(state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    ctx: NodeContext = state.ctx
    call = parse_body(MedicalCall, raw)
    result = await in_unit_of_work(ctx.db, lambda uow: medical.apply(ctx, uow, call))
    return 200, result.model_dump_json().encode()


async def _preview(state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    ctx: NodeContext = state.ctx
    call = parse_body(MedicalCall, raw)
    async with ReadView(ctx.db) as view:
        result = await medical.preview(ctx, view, call)
    return 200, result.model_dump_json().encode()


# The internal token is checked before the body is read (pos_api.internal_only).
ROUTES = [FastRoute(PREFIX + "/messages:apply", _apply, auth=internal_only,
                    doc=FastDoc("A state-changing medical message (2201-2207, 2401-2404, 2301-2305), once per msgid",
                                MedicalCall, MedicalResult, tags=("internal medical",), bearer=True)),
          FastRoute(PREFIX + "/messages:preview", _preview, auth=internal_only,
                    doc=FastDoc("2206 / 2303: the split a settle would make now; nothing is written", MedicalCall,
                                MedicalResult, tags=("internal medical",), bearer=True))]
