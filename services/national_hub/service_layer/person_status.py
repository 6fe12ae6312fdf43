"""A person's status as their home node reports it (wallet.person.status-changed.v1): the directory follows,
and when the insurance ended or the person moved to another pooling region every binding they are part of ends
(DOMAIN.md), which also refunds the transfers still in flight on those bindings (bindings._change)."""

from __future__ import annotations

import sqlalchemy as sa

from services.national_hub.service_layer import bindings
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.directory import DIRECTORY
from shared.contracts.events import PersonStatusChanged
from shared.db import UnitOfWork


async def on_person_status_changed(ctx: HubContext, uow: UnitOfWork, msg: PersonStatusChanged) -> None:
    """Idempotent: a redelivery writes the same flag again and finds no binding left to end."""
    await uow.execute(sa.update(DIRECTORY).where(DIRECTORY.c.psn_no == msg.psn_no).values(
        insured=msg.insured, pooling_admdvs=msg.pooling_admdvs, updated_at=ctx.clock.now()))
    if msg.binding_end_reason is not None:
        await bindings.end_all_of_person(ctx, uow, msg.psn_no, msg.binding_end_reason)
