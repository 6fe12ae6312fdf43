"""Periodic jobs of a province node: quotas of past years close (their unused part goes back to the giver),
premium reservations whose payment never came free their slot, and system accounts' changes are folded into
their balances."""

from __future__ import annotations

from services.province_node.adapters import ledger_repo
from services.province_node.domain.quota_rules import quota_year
from services.province_node.service_layer import premiums, quotas
from services.province_node.service_layer.context import NodeContext
from shared.db import UnitOfWork


async def close_past_years(ctx: NodeContext) -> None:
    async with UnitOfWork(ctx.db) as uow:
        if await uow.lead("quota-year-end") and await quotas.close_grants(ctx, uow, None,
                                                                         quota_year(ctx.clock.now())):
            await uow.commit()


async def expire_premium_reservations(ctx: NodeContext) -> None:
    async with UnitOfWork(ctx.db) as uow:
        if await premiums.expire_reservations(ctx, uow, ctx.settings.premium_reservation_ttl_s):
            await uow.commit()


async def fold_system_balances(ctx: NodeContext) -> None:
    """ledger_repo.py "Hot accounts": one replica at a time, so that they do not queue on the rows."""
    while True:
        async with UnitOfWork(ctx.db) as uow:
            if not await uow.lead("system-balances"):
                return
            moved = await ledger_repo.fold_system_deltas(uow)
            if not moved:
                return
            await uow.commit()
        if moved < ledger_repo.FOLD_BATCH:
            return
