"""Operator API of the hub (../shared/API.md "Operator API" and "Supervision"), behind the operator token."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.national_hub.domain import risk_rules as rules
from services.national_hub.domain import statistics
from services.national_hub.entrypoints.deps import CtxDep
from services.national_hub.service_layer import activity, audit_chain, holds, ops, risk
from shared.db import ReadView
from shared.idempotency import run_idempotent
from shared.openapi import json_body, refusal
from shared.web import require_operator


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """What the OpenAPI document lists for a route's refusals: `{"error": {"code", "message"}}`."""
    return {status: {"description": "refused: {\"error\": {\"code\": STABLE_CODE, \"message\": text}}"}
            for status in statuses}


router = APIRouter(prefix="/v1/ops", tags=["operator"], dependencies=[Depends(require_operator)])


# The month the use case takes (ops.stats): the document says it all, FastAPI checks the shape (VALIDATION_ERROR),
# the use case the month's range (INVALID_PERIOD).
MONTH = {"pattern": r"^\d{4}-(0[1-9]|1[0-2])$"}
DAY = {"pattern": r"^\d{4}-\d{2}-\d{2}$"}  # activity.period: else INVALID_PERIOD; a day that does not exist too
ID_NO = {"pattern": r"^\s*\d{17}[\dXx]\s*$"}  # else INVALID_ID_NO (activity.py), as a wrong check digit


@router.get("/stats", responses={422: refusal("INVALID_PERIOD", when="from is after to"), 200: {
    "description": "JSON, or CSV with format=csv",
    "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}})
async def stats(ctx: CtxDep,
                from_month: str = Query(alias="from", pattern=r"^\d{4}-\d{2}$", json_schema_extra=MONTH),
                to_month: str = Query(alias="to", pattern=r"^\d{4}-\d{2}$", json_schema_extra=MONTH),
                output: Literal["json", "csv"] = Query("json", alias="format")) -> Any:
    async with ReadView(ctx.db) as view:
        result = await ops.stats(view, from_month, to_month)
    if output == "csv":
        return Response(statistics.to_csv(result["rows"]), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="yibao-stats-{from_month}'
                                                        f'-{to_month}.csv"'})
    return result


@router.get("/settlement-windows")
async def settlement_windows(ctx: CtxDep) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await ops.list_windows(view)


@router.post("/settlement-windows/current:close")
async def close_window(request: Request, ctx: CtxDep) -> Response:
    return await run_idempotent(request, ctx.db, "operator", lambda uow: ops.close_current_window(ctx, uow),
                                status=200)


# ------------------------------------------------------------------------------------------ supervision


@router.get("/risk-rules")
async def risk_rules(ctx: CtxDep) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await risk.list_rules(view)


RULE_CHANGE = {"type": "object", "additionalProperties": False, "properties": {  # risk_rules.apply_change
    "enabled": {"type": "boolean"}, "action": {"enum": ["alert", "hold"]},
    "params": {"type": "object", "additionalProperties": {"type": "integer"}}}}


@router.put("/risk-rules/{rule_id}", openapi_extra=json_body(RULE_CHANGE), responses={
    404: refusal("RULE_NOT_FOUND"),
    422: refusal("INVALID_RULE_ACTION", "INVALID_RULE_PARAM",
                 when="an action or a param this rule does not have, a param out of its bounds")})
async def put_risk_rule(request: Request, ctx: CtxDep, body: Annotated[Any, Body()], rule_id: Annotated[
        str, Path(json_schema_extra={"enum": sorted(rules.RULES)})]) -> Response:
    """`{enabled?, action?, params?}`: a param the rule does not have, or a value out of its bounds → 422."""
    return await run_idempotent(request, ctx.db, "operator", lambda uow: risk.put_rule(ctx, uow, rule_id, body),
                                status=200)


@router.get("/alerts", responses=error_responses(422))
async def alerts(ctx: CtxDep, state: str | None = Query(None, pattern="^(open|resolved|OPEN|RESOLVED)$"),
                 rule_id: str | None = Query(None, max_length=40)) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await holds.list_alerts(view, state, rule_id)


class Resolution(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: str = Field(pattern="^(dismiss|release|reject)$")
    reviewer: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=200)


def _decision(body: Any) -> holds.Decision | None:
    """The reviewer's decision, or None for a body that is not one (the use case refuses it, 422 VALIDATION_ERROR,
    once it has found the alert: an unknown alert is 404 whatever the body)."""
    try:
        resolution = Resolution.model_validate(body if body is not None else {})
    except ValidationError:
        return None
    return holds.Decision(resolution.decision, resolution.reviewer, resolution.note)


@router.post("/alerts/{alert_id}:resolve", openapi_extra=json_body(Resolution.model_json_schema()), responses={
    404: refusal("ALERT_NOT_FOUND"), 409: refusal("ALERT_ALREADY_RESOLVED"),
    422: refusal("ALERT_HOLDS_NOTHING", when="release or reject on an alert that holds no transfer")})
async def resolve_alert(request: Request, ctx: CtxDep, alert_id: str, body: Any = Body(None)) -> Response:
    """`{decision: dismiss|release|reject, reviewer, note}`. release/reject on an alert holding nothing → 422
    ALERT_HOLDS_NOTHING; an alert already resolved → 409 ALERT_ALREADY_RESOLVED (the same Idempotency-Key gets
    the first answer back)."""
    decision = _decision(body)
    return await run_idempotent(request, ctx.db, "operator",
                                lambda uow: holds.resolve(ctx, uow, alert_id, decision), status=200)


@router.get("/persons/{id_no}/activity", responses={
    404: refusal("PERSON_NOT_FOUND"),
    422: refusal("INVALID_ID_NO", "INVALID_PERIOD", when="a wrong check digit; a day that does not exist, or from "
                                                         "after to")})
async def person_activity(ctx: CtxDep, id_no: Annotated[str, Path(json_schema_extra=ID_NO)],
                          from_day: str | None = Query(None, alias="from", json_schema_extra=DAY),
                          to_day: str | None = Query(None, alias="to", json_schema_extra=DAY),
                          reviewer: str | None = Query(None, max_length=64),
                          x_reviewer: str | None = Header(None, max_length=64)) -> dict[str, Any]:
    """Recorded in the access log with the reviewer's name (`reviewer` query parameter or `X-Reviewer` header)."""
    return await activity.person_activity(ctx, id_no, from_day, to_day, reviewer or x_reviewer)


@router.get("/access-log")
async def access_log(ctx: CtxDep, limit: int = Query(1000, ge=1, le=10_000)) -> list[dict[str, Any]]:
    async with ReadView(ctx.db) as view:
        return await activity.access_log(view, limit)


@router.get("/audit")
async def audit_heads(ctx: CtxDep) -> list[dict[str, Any]]:
    return await audit_chain.heads(ctx)


@router.post("/audit:verify")
async def audit_verify(ctx: CtxDep) -> list[dict[str, Any]]:
    return await audit_chain.verify_all(ctx)

