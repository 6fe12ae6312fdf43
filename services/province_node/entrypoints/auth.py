"""Citizen authentication at a province node (the operators' and services' bearer tokens are checked by
shared/web.py, as in every service). The check is `async def` although it never awaits: FastAPI runs a plain
`def` dependency in a worker thread, a hand-off that cost more than the check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.province_node.entrypoints.deps import CtxDep
from shared.tokens import Claims, InvalidToken, verify
from shared.web import ApiError, bearer_token


async def citizen(request: Request, ctx: CtxDep) -> Claims:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "UNAUTHENTICATED", "a bearer token from POST /v1/identity/sessions is required")
    try:
        claims = verify(ctx.settings.token_key.encode(), token, ctx.clock.now().timestamp())
    except InvalidToken as exc:
        raise ApiError(401, "UNAUTHENTICATED", f"token refused: {exc}") from exc
    if claims.insuplc_admdvs != ctx.admdvs:
        raise ApiError(403, "WRONG_PROVINCE", f"this is the node of {ctx.admdvs}; use your home province's node")
    return claims


CitizenDep = Annotated[Claims, Depends(citizen)]
