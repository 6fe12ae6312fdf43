"""The node's Kafka inbox: one batch, one transaction (DESIGN.md: batching is how throughput is won)."""

from __future__ import annotations

import logging

from services.province_node.service_layer import bindings, transfers
from services.province_node.service_layer.context import NodeContext
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    BindingChanged,
    TransferCancel,
    TransferCredit,
    TransferSettled,
)
from shared.db import UnitOfWork

log = logging.getLogger("yibao.node.messages")


async def handle_batch(ctx: NodeContext, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        if env.type == TransferCredit.TYPE:
            await transfers.on_credit(ctx, uow, env, TransferCredit.model_validate(env.data))
        elif env.type == TransferCancel.TYPE:
            await transfers.on_cancel(ctx, uow, env, TransferCancel.model_validate(env.data))
        elif env.type == TransferSettled.TYPE:
            await transfers.on_settled(ctx, uow, TransferSettled.model_validate(env.data))
        elif env.type == BindingChanged.TYPE:
            await bindings.apply_snapshot(ctx, uow, BindingChanged.model_validate(env.data).binding)
        else:
            log.warning("ignoring message of unknown type %s", env.type)
