"""Quotas, premiums and notices end to end in process (real node and hub code, real SQLite, messages relayed
from outbox to consumer as Kafka would), with a FixedClock so the year can end without waiting for it."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from services.province_node.domain import ledger
from services.province_node.service_layer import housekeeping, quotas
from services.province_node.service_layer.bindings import NOTIFICATIONS
from shared.db import UnitOfWork
from tests.support.inprocess import InProcessFederation
from tests.support.stories import (
    GIVER_PA_FEN,
    Person,
    active_binding,
    balance_fen,
    family,
    open_wallet,
    send_transfer,
    transfer_out_state,
)


class FailingSms:
    records_at_commit = False  # it runs a statement that fails: in a savepoint

    async def send(self, uow: UnitOfWork, psn_no: str, text: str, at: datetime) -> None:
        await uow.execute(sa.text("SELECT no_such_column FROM notifications"))


async def test_a_failing_notice_never_loses_or_delays_money(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    fed.node(mother.admdvs).sms = FailingSms()
    transfer_id = await send_transfer(fed, giver, binding_id, 50_000)
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, mother.admdvs, ledger.wallet_account(mother.psn_no)) == 50_000
    async with UnitOfWork(fed.node(mother.admdvs).db) as uow:
        notices = (await uow.execute(sa.select(NOTIFICATIONS).where(NOTIFICATIONS.c.psn_no == mother.psn_no))).all()
    assert all("已收到" not in row.text for row in notices)


async def set_quota(fed: InProcessFederation, giver: Person, binding_id: str, annual_quota_fen: int) -> None:
    ctx = fed.node(giver.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        body = await quotas.set_quota(ctx, uow, giver.claims(fed.clock.now()), binding_id, annual_quota_fen)
        await uow.commit()
    assert body["annual_quota_fen"] == annual_quota_fen


async def test_year_end_releases_the_unused_quota(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await set_quota(fed, giver, binding_id, 60_000)
    await fed.pump()
    pa = ledger.personal_account(giver.psn_no)
    assert await balance_fen(fed, giver.admdvs, pa) == GIVER_PA_FEN - 60_000
    # The mother spends 20,000 at her pharmacy from the mirror, without asking the giver's province.
    mother_ctx = fed.node(mother.admdvs)
    async with UnitOfWork(mother_ctx.db) as uow:
        await quotas.spend_quota(mother_ctx, uow, binding_id, 20_000, "SETL-1")
        await uow.commit()
    await fed.pump()
    year = fed.clock.now().year
    assert await balance_fen(fed, giver.admdvs, ledger.quota_reserve_account(binding_id, year)) == 40_000
    # New Year: the giver's node closes last year's quota; the mirror closes at what was spent; the rest returns.
    fed.clock.advance((datetime(year + 1, 1, 1, 0, 30, tzinfo=fed.clock.now().tzinfo) - fed.clock.now()
                       + timedelta(hours=-7)).total_seconds())
    assert fed.clock.now().year == year  # 00:30 in Shanghai is still the old year in UTC
    await housekeeping.close_past_years(fed.node(giver.admdvs))
    await fed.pump()
    assert await balance_fen(fed, giver.admdvs, pa) == GIVER_PA_FEN - 20_000
    assert await balance_fen(fed, giver.admdvs, ledger.quota_reserve_account(binding_id, year)) == 0
    async with UnitOfWork(mother_ctx.db) as uow:
        assert await quotas.spendable_quotas(uow, mother.psn_no, year) == []
