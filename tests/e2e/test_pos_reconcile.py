"""3201 reconciliation on the real federation: what an institution settled, counted and totalled per day."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from launcher.client import FederationClient
from launcher.pos_client import Item, ok
from tests.conftest import Federation
from tests.e2e.pos import (
    DRUG,
    TISSUES,
    enrolled,
    new_till,
    settlement_day,
)

pytestmark = pytest.mark.federation


async def test_reconciliation_counts_and_totals_what_was_settled(
        federation: Federation, client: FederationClient, admin: FederationClient) -> None:
    till = await new_till(admin, "成都对账药房", "510100")
    try:
        person = await enrolled(client, "640100", pa_fen=5_000)
        payer = await till.payer("02", person.id_no)
        kept = ok(await till.settle(payer, [Item(DRUG, 2, "20.00"), Item(TISSUES, 1, "4.00")]))["setlinfo"]
        kept2 = ok(await till.settle(payer, [Item(DRUG, 1, "30.00")]))["setlinfo"]  # 10 from PA, 20 cash
        dropped = ok(await till.settle(payer, [Item(DRUG, 1, "1.00")]))["setlinfo"]
        ok(await till.cancel(dropped["setl_id"], dropped["mdtrt_id"], payer.psn_no))
        today = settlement_day()
        first, last = today - timedelta(days=1), today + timedelta(days=1)
        stmt = ok(await till.reconcile(first, last))["stmtinfo"]
        assert (stmt["fixmedins_setl_cnt"], stmt["cancelled_cnt"]) == (2, 1)
        assert (stmt["medfee_sumamt"], stmt["fund_pay_sumamt"], stmt["acct_pay"], stmt["acct_mulaid_pay"],
                stmt["psn_cash_pay"]) == (74.0, 0.0, 50.0, 0.0, 24.0)
        assert kept["acct_pay"] + kept2["acct_pay"] == 50.0
        agree = ok(await till.reconcile(first, last, medfee_sumamt=Decimal("74.00"), acct_pay=Decimal("50.00"),
                                        fund_pay_sumamt=Decimal("0"), fixmedins_setl_cnt=2))["stmtinfo"]
        assert (agree["stmt_rslt"], agree["stmt_rslt_dscr"]) == ("0", "totals agree")
        disagree = ok(await till.reconcile(first, last, medfee_sumamt=Decimal("75.00"),
                                           fixmedins_setl_cnt=3))["stmtinfo"]
        assert disagree["stmt_rslt"] == "1" and "medfee_sumamt" in disagree["stmt_rslt_dscr"]
        other_days = ok(await till.reconcile(today - timedelta(days=10), today - timedelta(days=2)))["stmtinfo"]
        assert other_days["fixmedins_setl_cnt"] == 0
        # Another institution sees only its own.
        assert ok(await till.reconcile(first, last))["stmtinfo"]["fixmedins_setl_cnt"] == 2
        bad = await till.reconcile(last, first)
        assert bad["infcode"] == -1 and "before" in bad["err_msg"]
    finally:
        await till.aclose()
