"""The node's Kafka inbox: one batch, one transaction (DESIGN.md: batching is how throughput is won)."""

from __future__ import annotations

import logging

from services.province_node.service_layer import bindings, premiums, quotas, transfers
from services.province_node.service_layer.context import NodeContext
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    BindingChanged,
    BindingSnapshot,
    PersonNotice,
    TransferCancel,
    TransferCredit,
    TransferSettled,
    TransferUnderReview,
)
from shared.contracts.mutual_aid_events import PremiumPaid, QuotaMirrorState, QuotaSet, QuotaSpent
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
            snapshot = BindingChanged.model_validate(env.data).binding
            await bindings.apply_snapshot(ctx, uow, snapshot)
            if snapshot.state == "ENDED":
                await _end_quotas(ctx, uow, snapshot)
        elif env.type == QuotaSet.TYPE:
            await quotas.on_quota_set(ctx, uow, QuotaSet.model_validate(env.data))
        elif env.type == QuotaSpent.TYPE:
            await quotas.on_quota_spent_at_giver(ctx, uow, QuotaSpent.model_validate(env.data))
        elif env.type == QuotaMirrorState.TYPE:
            await quotas.on_mirror_state(ctx, uow, QuotaMirrorState.model_validate(env.data))
        elif env.type == PremiumPaid.TYPE:
            await premiums.on_premium_paid(ctx, uow, PremiumPaid.model_validate(env.data))
        elif env.type == TransferUnderReview.TYPE:
            await transfers.on_under_review(ctx, uow, TransferUnderReview.model_validate(env.data))
        elif env.type == PersonNotice.TYPE:
            notice = PersonNotice.model_validate(env.data)
            await bindings.notify(uow, ctx, notice.psn_no, notice.text)
        else:
            log.warning("ignoring message of unknown type %s", env.type)


async def _end_quotas(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    """An ended binding ends its quotas on both sides (idempotent: only open ones are touched)."""
    if snapshot.relative_admdvs == ctx.admdvs:
        await quotas.close_mirrors_of_binding(ctx, uow, snapshot)
    if snapshot.giver_admdvs == ctx.admdvs:
        await quotas.close_grants(ctx, uow, snapshot.binding_id, None)
