"""`POST /v1/me/ec-token` (citizen API): the 医保码 a till scans (mdtrt_cert_type 01). The token names the
person and this province and is signed with the federation's ec-token key (shared/tokens.py), so the gateway
verifies it and routes the payment here without asking anyone."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from services.province_node.domain.errors import DomainError
from services.province_node.entrypoints.auth import CitizenDep
from services.province_node.entrypoints.deps import CtxDep
from services.province_node.service_layer.persons import person_by_psn_no
from shared.db import ReadView
from shared.tokens import issue_ec_token

router = APIRouter(prefix="/v1", tags=["citizen"])


@router.post("/me/ec-token")
async def ec_token(ctx: CtxDep, claims: CitizenDep) -> dict[str, Any]:
    async with ReadView(ctx.db) as view:
        person = await person_by_psn_no(view, claims.psn_no)
    if not person.insured:
        raise DomainError("INSURANCE_ENDED", "insurance has ended; no 医保码 can be issued")
    now_s = int(ctx.clock.now().timestamp())
    ttl_s = ctx.settings.ec_token_ttl_s
    token = issue_ec_token(ctx.settings.token_key.encode(), claims.psn_no, ctx.admdvs, now_s, now_s + ttl_s)
    return {"ec_token": token, "expires_in": ttl_s}
