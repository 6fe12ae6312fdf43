"""Periodic jobs of a province node: quotas of past years close (their unused part goes back to the giver),
and premium reservations whose payment never came free their slot."""

from __future__ import annotations

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
