"""The hub's Kafka inbox: one batch, one transaction."""

from __future__ import annotations

import logging

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

log = logging.getLogger("yibao.hub.messages")


async def handle_batch(ctx: HubContext, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        if env.type == TransferRequested.TYPE:
            await transfers.on_requested(ctx, uow, env, TransferRequested.model_validate(env.data))
        elif env.type == TransferCreditResult.TYPE:
            await transfers.on_result(ctx, uow, env, TransferCreditResult.model_validate(env.data))
        elif env.type == TransferAwaitingAcceptance.TYPE:
            await transfers.on_awaiting_acceptance(ctx, uow, env, TransferAwaitingAcceptance.model_validate(env.data))
        elif env.type == PersonStatusChanged.TYPE:
            await person_status.on_person_status_changed(ctx, uow, PersonStatusChanged.model_validate(env.data))
        elif env.type == QuotaSet.TYPE:
            await mutual_aid.on_quota_set(ctx, uow, env, QuotaSet.model_validate(env.data))
        elif env.type == QuotaSpent.TYPE:
            await mutual_aid.on_quota_spent(ctx, uow, env, QuotaSpent.model_validate(env.data))
        elif env.type == QuotaMirrorState.TYPE:
            await mutual_aid.on_mirror_state(ctx, uow, env, QuotaMirrorState.model_validate(env.data))
        elif env.type == PremiumPaid.TYPE:
            await mutual_aid.on_premium_paid(ctx, uow, env, PremiumPaid.model_validate(env.data))
        elif env.type == PosSettlementRecorded.TYPE:
            await clearing.on_pos_settlement(ctx, uow, PosSettlementRecorded.model_validate(env.data))
        elif env.type == SettlementReported.TYPE:
            await supervised_settlements.on_settlement_reported(ctx, uow, SettlementReported.model_validate(env.data))
        elif env.type == AuditCheckpointed.TYPE:
            await audit_chain.on_checkpoint(ctx, uow, AuditCheckpointed.model_validate(env.data))
        else:
            log.warning("ignoring message of unknown type %s", env.type)
