"""The node's Kafka inbox: which use case applies each message type (EVENT_HANDLERS), run by the shared
dispatch (shared/dispatch.py: each message validated against its payload class; one batch, one transaction,
DESIGN.md: batching is how throughput is won)."""

from __future__ import annotations

from services.province_node.domain import binding_replica
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
from shared.dispatch import EventHandler, dispatch, event_handlers, on, on_envelope


async def _binding_changed(ctx: NodeContext, uow: UnitOfWork, msg: BindingChanged) -> None:
    snapshot = msg.binding
    await bindings.apply_snapshot(ctx, uow, snapshot)
    if binding_replica.has_ended(snapshot.state):
        await _end_quotas(ctx, uow, snapshot)


async def _end_quotas(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    """An ended binding ends its quotas on both sides (idempotent: only open ones are touched)."""
    if snapshot.relative_admdvs == ctx.admdvs:
        await quotas.close_mirrors_of_binding(ctx, uow, snapshot)
    if snapshot.giver_admdvs == ctx.admdvs:
        await quotas.close_grants(ctx, uow, snapshot.binding_id, None)


async def _person_notice(ctx: NodeContext, uow: UnitOfWork, msg: PersonNotice) -> None:
    await bindings.notify(uow, ctx, msg.psn_no, msg.text)


EVENT_HANDLERS: dict[str, EventHandler[NodeContext]] = event_handlers(
    on_envelope(TransferCredit, transfers.on_credit),
    on_envelope(TransferCancel, transfers.on_cancel),
    on(TransferSettled, transfers.on_closed),
    on(TransferUnderReview, transfers.on_under_review),
    on(BindingChanged, _binding_changed),
    on(PersonNotice, _person_notice),
    on(QuotaSet, quotas.on_quota_set),
    on(QuotaSpent, quotas.on_quota_spent_at_giver),
    on(QuotaMirrorState, quotas.on_mirror_state),
    on(PremiumPaid, premiums.on_premium_paid),
)


async def handle_batch(ctx: NodeContext, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """One consumed batch in this unit of work (what the consumer loop runs, through shared.dispatch.Inbox)."""
    await dispatch(EVENT_HANDLERS, ctx, uow, envelopes)
