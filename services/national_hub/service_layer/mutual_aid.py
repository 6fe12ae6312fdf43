"""Routing of quota and premium messages between province nodes, the obligations they create for
clearing, and the synchronous premium calls the hub forwards to the beneficiary's node."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from services.national_hub.adapters.node_client import NodeClient
from services.national_hub.adapters.tables import Binding
from services.national_hub.domain import statistics
from services.national_hub.service_layer import ops
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.directory import DIRECTORY
from services.national_hub.service_layer.ops import OBLIGATIONS
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.internal_api import PremiumReservationRequest
from shared.contracts.mutual_aid_events import PremiumPaid, QuotaMirrorState, QuotaSet, QuotaSpent
from shared.db import ReadView, UnitOfWork
from shared.errors import ApiError
from shared.outbox import emit
from shared.tables import table

BINDINGS = table(Binding)


async def _forward(ctx: HubContext, uow: UnitOfWork, env: Envelope, admdvs: str, key: str,
                   message: BaseModel) -> None:
    await emit(uow, topics.province_inbound(admdvs), key, message, source=ctx.source, trace_id=env.trace_id)


async def _obligation(ctx: HubContext, uow: UnitOfWork, kind: str, ref: str, debtor: str, creditor: str,
                      amount_fen: int) -> None:
    if debtor == creditor:
        return  # within one province nothing crosses a border
    if (await uow.execute(sa.select(OBLIGATIONS.c.id).where(OBLIGATIONS.c.ref == ref))).first():
        return
    await uow.execute(sa.insert(OBLIGATIONS).values(kind=kind, ref=ref, debtor_admdvs=debtor, creditor_admdvs=creditor,
                                                    amount_fen=amount_fen, created_at=ctx.clock.now()))


async def on_quota_set(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: QuotaSet) -> None:
    await _forward(ctx, uow, env, msg.relative_admdvs, msg.binding_id, msg)


async def on_quota_spent(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: QuotaSpent) -> None:
    # The giver's province pays for what the relative spent in theirs (a return withdraws it).
    await _obligation(ctx, uow, "QUOTA", f"QUOTA:{msg.spend_id}", msg.giver_admdvs, msg.relative_admdvs,
                      msg.amount_fen)
    binding = (await uow.execute(sa.select(BINDINGS.c.giver_psn_no, BINDINGS.c.relative_psn_no).where(
        BINDINGS.c.binding_id == msg.binding_id))).first()
    giver, relative = (binding.giver_psn_no, binding.relative_psn_no) if binding else (None, msg.binding_id)
    await ops.record_use(uow, ref=f"QUOTA:{msg.spend_id}", from_admdvs=msg.giver_admdvs,
                         to_admdvs=msg.relative_admdvs, use=msg.use, person_key=relative,
                         amount_fen=msg.amount_fen, at=msg.occurred_at, kind=statistics.QUOTA_USE,
                         scope=await ops.scope_between(uow, giver, relative) if giver else None,
                         payer_psn_no=giver)
    await _forward(ctx, uow, env, msg.giver_admdvs, msg.binding_id, msg)


async def on_mirror_state(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: QuotaMirrorState) -> None:
    await _forward(ctx, uow, env, msg.giver_admdvs, msg.binding_id, msg)


async def on_premium_paid(ctx: HubContext, uow: UnitOfWork, env: Envelope, msg: PremiumPaid) -> None:
    await _obligation(ctx, uow, "PREMIUM", f"PREMIUM:{msg.payment_id}", msg.payer_admdvs, msg.beneficiary_admdvs,
                      msg.amount_fen)
    # Money relatives put in the payer's wallet, spent by its holder: a wallet use at the holder's province.
    await ops.record_use(uow, ref=f"PREMIUM:{msg.payment_id}", from_admdvs=msg.payer_admdvs,
                         to_admdvs=msg.payer_admdvs, use="premium", person_key=msg.payer_psn_no,
                         amount_fen=msg.amount_fen, at=msg.paid_at, kind=statistics.WALLET_USE, scope=None,
                         payer_psn_no=msg.payer_psn_no)
    await _forward(ctx, uow, env, msg.beneficiary_admdvs, msg.payment_id, msg)


async def forward_premium(ctx: HubContext, nodes: NodeClient, action: str,
                          request: PremiumReservationRequest) -> dict[str, Any]:
    """`premiums:reserve` / `premiums:pay-from-quota` go to the beneficiary's home node, found by ID hash."""
    async with ReadView(ctx.db) as view:
        row = (await view.execute(sa.select(DIRECTORY.c.insuplc_admdvs).where(
            DIRECTORY.c.id_hash == request.beneficiary_id_hash))).first()
    if row is None:
        raise ApiError(404, "PERSON_NOT_FOUND", "the beneficiary is not in the directory")
    return await nodes.post(row.insuplc_admdvs, f"/internal/v1/premiums:{action}", request.model_dump(mode="json"))
