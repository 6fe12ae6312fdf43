"""9001: a till's operator signs in; every later message carries the sign_no (API.md "POS API")."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer.context import SIGN_INS
from services.pharmacy_gateway.service_layer.exchange import Exchange
from shared.clock import SHANGHAI
from shared.db import UnitOfWork


async def sign_in(exchange: Exchange) -> dict[str, Any]:
    try:
        sign = nhsa_inputs.parse_9001(exchange.input)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    ctx = exchange.ctx
    now = ctx.clock.now()
    sign_no = now.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**16):016d}"

    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        await uow.execute(sa.insert(SIGN_INS).values(
            sign_no=sign_no, fixmedins_code=exchange.institution.fixmedins_code, opter_no=sign.opter_no,
            mac=sign.mac, ip=sign.ip, sign_time=now))
        return exchange.answer(nhsa_output.sign_in_output(sign_no, now))

    response = await exchange.finish(build)
    if response.get("infcode") == 0:
        signed = response["output"]["signinoutb"]["sign_no"]
        ctx.registry.remember_sign_in(signed, exchange.institution.fixmedins_code)
    return response
