"""3201: the institution's totals over some days compared with the gateway's record of its settlements in
effect (pharmacies: settlements.py; hospitals and clinics, the fund's part included: medical_records.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.nhsa_inputs import Reconciliation
from services.pharmacy_gateway.domain.wire import Refused
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.exchange import Exchange
from shared.db import ReadView

# The gateway's totals for these days: count, medfee_fen, acct_pay_fen, mulaid_pay_fen, cash_pay_fen,
# undone_count (and fund_pay_fen where a fund pays).
Totals = Callable[[ReadView, str, Reconciliation], Awaitable[Mapping[str, int]]]


async def reconcile_with(exchange: Exchange, totals: Totals, *, checked_insutype: bool = False) -> dict[str, Any]:
    try:
        asked = nhsa_inputs.parse_3201(exchange.input, checked_insutype=checked_insutype)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    code = exchange.institution.fixmedins_code
    async with ReadView(exchange.ctx.db) as view:
        ours = await totals(view, code, asked)
    fund_pay_fen = ours.get("fund_pay_fen", 0)
    our_fen = {"medfee_sumamt": ours["medfee_fen"], "fund_pay_sumamt": fund_pay_fen, "acct_pay": ours["acct_pay_fen"]}
    differences = nhsa_inputs.differences(asked, our_fen, ours["count"])
    return await exchange.finish_with(exchange.answer(
        nhsa_output.reconcile_output(asked, code, ours, fund_pay_fen, differences)))


async def _pharmacy_totals(view: ReadView, code: str, asked: Reconciliation) -> Mapping[str, int]:
    return await settlements.totals(view, code, asked.first_day, asked.last_day, asked.setl_optins or None,
                                    asked.insutype or None)


async def reconcile(exchange: Exchange) -> dict[str, Any]:
    """3201 from a pharmacy (no fund pays there)."""
    return await reconcile_with(exchange, _pharmacy_totals)
