"""The hub's Kafka inbox: one batch, one transaction."""

from __future__ import annotations

import logging

from services.national_hub.service_layer import transfers
from services.national_hub.service_layer.context import HubContext
from shared.contracts.envelope import Envelope
from shared.contracts.events import TransferCreditResult, TransferRequested
from shared.db import UnitOfWork

log = logging.getLogger("yibao.hub.messages")


async def handle_batch(ctx: HubContext, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        if env.type == TransferRequested.TYPE:
            await transfers.on_requested(ctx, uow, env, TransferRequested.model_validate(env.data))
        elif env.type == TransferCreditResult.TYPE:
            await transfers.on_result(ctx, uow, env, TransferCreditResult.model_validate(env.data))
        else:
            log.warning("ignoring message of unknown type %s", env.type)
