"""Operator routes for the federation's dead letters (hub, operator token); shapes in
services/national_hub/service_layer/dead_letters.py and the README's operator part.

- `GET /v1/ops/dead-letters[?state=PARKED|REPLAYED]` → `{dead_letters: [{id, service, topic, key, message_type,
  message_id, error, state, parked_at, replayed_at, blocked_by, attempts}], services: [service],
  unreachable: [service]}`.
- `POST /v1/ops/dead-letters/{id}:replay` (`Idempotency-Key`) → `{id, service, state, replayed, still_parked,
  error?}`; 404 DEAD_LETTER_NOT_FOUND, 409 DEAD_LETTER_ALREADY_REPLAYED / DEAD_LETTER_BLOCKED."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.national_hub.entrypoints.deps import CtxDep
from services.national_hub.service_layer import dead_letters
from shared.db import UnitOfWork
from shared.dead_letters_api import host_of
from shared.idempotency import run_idempotent
from shared.web import require_operator

router = APIRouter(prefix="/v1/ops/dead-letters", tags=["operator"], dependencies=[Depends(require_operator)])


@router.get("")
async def list_dead_letters(request: Request, ctx: CtxDep,
                            state: str | None = Query(None, json_schema_extra={  # parse_state
        "pattern": "^([Pp][Aa][Rr][Kk][Ee][Dd]|[Rr][Ee][Pp][Ll][Aa][Yy][Ee][Dd])?$"})) -> dict[str, Any]:
    """`state`: PARKED or REPLAYED in any case, empty for both; anything else → 422 INVALID_STATE."""
    return await dead_letters.list_all(host_of(request), ctx.settings, state)


@router.post("/{dead_letter_id}:replay")
async def replay_dead_letter(request: Request, ctx: CtxDep, dead_letter_id: str) -> Response:
    host = host_of(request)

    async def replay() -> dict[str, Any]:
        return await dead_letters.replay(host, ctx.settings, dead_letter_id)

    async def answer(_: UnitOfWork, outcome: dict[str, Any]) -> dict[str, Any]:
        return outcome

    # The replay happens at the owning service (its own units of work); the hub stores the answer under the key,
    # so a retry with the same key gets the same answer instead of replaying again.
    return await run_idempotent(request, ctx.db, "operator", answer, prepare=replay, status=200)
