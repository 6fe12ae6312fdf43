"""The hub keeps the newest version of each settlement the gateways report for supervision
(supervised_settlements.py: one insert-or-replace-if-newer statement): on each backend, a later version replaces
the row, older news (a late or repeated report) changes nothing, and only a CHARGE that is news runs the
settlement rules."""

from __future__ import annotations

import sqlalchemy as sa

from services.national_hub.service_layer.supervised_settlements import SETTLEMENTS
from shared.contracts import topics
from shared.contracts.envelope import new_envelope
from shared.contracts.events import SettlementReported
from shared.db import ReadView
from tests.support.inprocess import InProcessFederation
from tests.support.wire import Wired

SETL_ID = "640000A1B2C3D4E5F60718293A4B5C"


def report(fed: InProcessFederation, version: int, effect: str) -> Wired:
    message = SettlementReported(
        setl_id=SETL_ID, version=version, effect=effect, use="pharmacy", infno="2102", fixmedins_code="P51010000001",
        institution_admdvs="510100", payer_admdvs="640100", psn_no="6400003141592653", medfee_fen=7_230,
        acct_pay_fen=5_000, wallet_pay_fen=1_930, quota_pay_fen=0, cash_pay_fen=300, settled_at=fed.clock.now(),
        occurred_at=fed.clock.now())
    return Wired(topics.HUB_INBOUND, SETL_ID, new_envelope(message, source="gateway", trace_id=SETL_ID))


async def held(fed: InProcessFederation) -> tuple[int, bool]:
    async with ReadView(fed.hub.db) as view:
        row = (await view.execute(sa.select(SETTLEMENTS.c.version, SETTLEMENTS.c.cancelled).where(
            SETTLEMENTS.c.setl_id == SETL_ID))).one()
    return int(row.version), bool(row.cancelled)


async def test_the_newest_version_stays_and_older_news_changes_nothing(any_fed: InProcessFederation) -> None:
    fed = any_fed
    await fed.deliver([report(fed, 1, "CHARGE")])
    assert await held(fed) == (1, False)
    await fed.deliver([report(fed, 3, "REFUND")])  # a reversal's answer, heard before the cancel's
    assert await held(fed) == (3, True)
    await fed.deliver([report(fed, 2, "REFUND"), report(fed, 1, "CHARGE")])  # late, and a repeat
    assert await held(fed) == (3, True)
    await fed.deliver([report(fed, 4, "CHARGE")])
    assert await held(fed) == (4, False)
