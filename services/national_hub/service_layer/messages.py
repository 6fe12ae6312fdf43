"""The hub's Kafka inbox: which use case applies each message type (EVENT_HANDLERS), run by the shared dispatch
(shared/dispatch.py: each message validated against its payload class; one batch, one transaction)."""

from __future__ import annotations

from services.national_hub.service_layer import (
    audit_chain,
    clearing,
    mutual_aid,
    person_status,
    supervised_settlements,
    transfers,
)
from services.national_hub.service_layer.context import HubContext
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    AuditCheckpointed,
    PersonStatusChanged,
    PosSettlementRecorded,
    SettlementReported,
    TransferAwaitingAcceptance,
    TransferCreditResult,
    TransferRequested,
)
from shared.contracts.mutual_aid_events import PremiumPaid, QuotaMirrorState, QuotaSet, QuotaSpent
from shared.db import UnitOfWork
from shared.dispatch import EventHandler, dispatch, event_handlers, on, on_envelope

EVENT_HANDLERS: dict[str, EventHandler[HubContext]] = event_handlers(
    on_envelope(TransferRequested, transfers.on_requested),
    on_envelope(TransferCreditResult, transfers.on_result),
    on_envelope(TransferAwaitingAcceptance, transfers.on_awaiting_acceptance),
    on(PersonStatusChanged, person_status.on_person_status_changed),
    on_envelope(QuotaSet, mutual_aid.on_quota_set),
    on_envelope(QuotaSpent, mutual_aid.on_quota_spent),
    on_envelope(QuotaMirrorState, mutual_aid.on_mirror_state),
    on_envelope(PremiumPaid, mutual_aid.on_premium_paid),
    on(PosSettlementRecorded, clearing.on_pos_settlement),
    on(SettlementReported, supervised_settlements.on_settlement_reported),
    on(AuditCheckpointed, audit_chain.on_checkpoint),
)


async def handle_batch(ctx: HubContext, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    """One consumed batch in this unit of work (what the consumer loop runs, through shared.dispatch.Inbox)."""
    await dispatch(EVENT_HANDLERS, ctx, uow, envelopes)
