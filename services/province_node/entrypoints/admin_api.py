"""Admin API of a province node (operator token) and the internal ledger summary used by checks and bench."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from services.province_node.adapters import ledger_repo
from services.province_node.entrypoints.citizen_api import bounded_amount
from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer import person_status, persons
from shared.contracts.internal_api import LedgerSummary
from shared.db import ReadView
from shared.idempotency import run_idempotent
from shared.money import MAX_AMOUNT_FEN, whole_number
from shared.openapi import refusal
from shared.web import require_internal, require_operator

router = APIRouter(tags=["admin"])


class ImportRequest(BaseModel):
    persons: list[dict[str, Any]] = Field(max_length=5000)


class MonthlyCredit(BaseModel):
    # The ID's check digit is the use case's (INVALID_ID_NO), the bound the entrypoint's (INVALID_AMOUNT): both in
    # the schema. A whole JSON number (`500.0`) is the integer its schema admits.
    id_no: str = Field(json_schema_extra={"pattern": r"^\s*\d{17}[\dXx]\s*$"})
    amount_fen: Annotated[int, BeforeValidator(whole_number)] = Field(gt=0, strict=True,
                                                                      json_schema_extra={"maximum": MAX_AMOUNT_FEN})


class MonthlyCreditRequest(BaseModel):
    credits: list[MonthlyCredit] = Field(min_length=1, max_length=5000)


class PoolingChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pooling_admdvs: str


@router.post("/v1/admin/persons:import", dependencies=[Depends(require_operator)])
async def import_persons(request: Request, ctx: CtxDep, body: ImportRequest) -> Response:
    for index, person in enumerate(body.persons):
        bounded_amount(person.get("personal_account_fen"), f"persons[{index}].personal_account_fen")
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow, plan: persons.import_persons(ctx, uow, plan),
                                prepare=lambda: persons.prepare_import(ctx, body.persons), status=200)


# The ID's check digit is the use case's to refuse (INVALID_ID_NO); its shape is in the document.
IdNo = Annotated[str, Path(json_schema_extra={"pattern": r"^\s*\d{17}[\dXx]\s*$"})]
PERSON_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: refusal("PERSON_NOT_FOUND"), 422: refusal("INVALID_ID_NO", when="a wrong check digit")}


@router.post("/v1/admin/persons/{id_no}:end-insurance", dependencies=[Depends(require_operator)],
             responses=PERSON_REFUSALS)
async def end_insurance(request: Request, ctx: CtxDep, id_no: IdNo) -> Response:
    """The person's insurance ends (停保): their bindings end and transfers in flight on them are refunded."""
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: person_status.end_insurance(ctx, uow, id_no), status=200)


@router.post("/v1/admin/persons/{id_no}:change-pooling", dependencies=[Depends(require_operator)], responses={
    **PERSON_REFUSALS, 422: refusal("INVALID_ID_NO", "INVALID_POOLING_ADMDVS",
                                    when="a wrong check digit; a pooling region outside this province")})
async def change_pooling(request: Request, ctx: CtxDep, id_no: IdNo, body: PoolingChange) -> Response:
    """A move within the province; into another pooling region it ends the person's bindings."""
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: person_status.change_pooling(ctx, uow, id_no, body.pooling_admdvs),
                                status=200)


@router.post("/v1/admin/accounts:credit-monthly", dependencies=[Depends(require_operator)], responses={
    404: refusal("PERSON_NOT_FOUND"),
    422: refusal("INVALID_ID_NO", "NOT_EMPLOYEE", when="a wrong check digit; a resident has no personal account")})
async def credit_monthly(request: Request, ctx: CtxDep, body: MonthlyCreditRequest) -> Response:
    for index, credit in enumerate(body.credits):
        bounded_amount(credit.amount_fen, f"credits[{index}].amount_fen")
    credits = [persons.Credit(credit.id_no, credit.amount_fen) for credit in body.credits]
    return await run_idempotent(request, ctx.db, "operator", lambda uow: persons.credit_monthly(ctx, uow, credits),
                                status=200)


@router.get("/internal/v1/ledger/summary", dependencies=[Depends(require_internal)], tags=["internal"],
            response_model=LedgerSummary)
async def ledger_summary(ctx: CtxDep) -> LedgerSummary:
    """Balances by account kind and whether the journal balances: what conservation checks read."""
    async with ReadView(ctx.db) as view:
        totals = await ledger_repo.totals_by_kind(view)
        balanced = await ledger_repo.journal_is_balanced(view)
    return LedgerSummary(admdvs=ctx.admdvs, totals_fen=totals, sum_fen=sum(totals.values()),
                         journal_balanced=balanced)
