"""Clearing obligations from pharmacy settlements across provinces (DESIGN.md: the hub records every
inter-province obligation). The gateway reports each change of a cross-province settlement; the payer's
province owes the pharmacy's province what accounts paid (CHARGE), and a cancel or reversal withdraws that
debt (REFUND: the same pair, the amount negated, so netting per pair and per province stays a plain sum).
`ref` is unique, so a redelivered event records nothing twice."""

from __future__ import annotations

import sqlalchemy as sa

from services.national_hub.adapters.tables import ClearingObligation
from services.national_hub.service_layer.context import HubContext
from shared.contracts.events import PosSettlementRecorded
from shared.db import Prepared, UnitOfWork
from shared.regions import province_of
from shared.tables import table

OBLIGATIONS = table(ClearingObligation)

POS_KINDS = {"CHARGE": "POS", "REFUND": "POS_REFUND"}
# Hospital and clinic settlements (issue 11): the same event with use outpatient|inpatient; the amount includes
# what the pooled fund paid.
MEDICAL_KINDS = {"CHARGE": "MEDICAL", "REFUND": "MEDICAL_REFUND"}

# Built once: one of each per cross-province pharmacy payment.
_RECORDED = Prepared(sa.select(OBLIGATIONS.c.id).where(OBLIGATIONS.c.ref == sa.bindparam("b_ref")))
_NEW_OBLIGATION = Prepared(sa.insert(OBLIGATIONS))


async def on_pos_settlement(ctx: HubContext, uow: UnitOfWork, msg: PosSettlementRecorded) -> None:
    ref = f"POS:{msg.ref}"
    if (await uow.execute(_RECORDED, {"b_ref": ref})).first():
        return
    amount_fen = msg.amount_fen if msg.effect == "CHARGE" else -msg.amount_fen
    kinds = POS_KINDS if msg.use == "pharmacy" else MEDICAL_KINDS
    # Written as the transaction commits, with its other deferred rows (UnitOfWork.defer).
    uow.defer(_NEW_OBLIGATION, {
        "kind": kinds[msg.effect], "ref": ref, "debtor_admdvs": province_of(msg.payer_admdvs),
        "creditor_admdvs": province_of(msg.pharmacy_admdvs), "amount_fen": amount_fen,
        "created_at": ctx.clock.now()})
    # Statistics and the settlement rules learn of every settlement, in- and cross-province, from
    # supervision.settlement.reported.v1 (supervised_settlements.py), not from this clearing event.
