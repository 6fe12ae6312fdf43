"""Settlements as the gateway reports them for supervision (supervision.settlement.reported.v1, issue 12): every
settlement of every province's payer, in- and cross-province, so that investigators see a person's whole
activity, the settlement rules run, and statistics count wallet uses (quota uses come from the quota spends the
relative's node reports). The hub keeps the newest version of each settlement; a change of effect (CHARGE /
REFUND) counts once, by its (setl_id, version)."""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import SupervisedSettlement
from services.national_hub.domain import statistics
from services.national_hub.service_layer import ops, risk
from services.national_hub.service_layer.context import HubContext
from shared.contracts.events import SettlementReported
from shared.db import Prepared, UnitOfWork, for_update
from shared.regions import province_of
from shared.tables import table

SETTLEMENTS = table(SupervisedSettlement)

# Built once: every settlement in the federation runs these (their compiled forms are reused).
_VERSION = Prepared(for_update(sa.select(SETTLEMENTS.c.version).where(SETTLEMENTS.c.setl_id == sa.bindparam("b_id"))))
_NEW = Prepared(sa.insert(SETTLEMENTS))
_NEWER = Prepared(sa.update(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == sa.bindparam("b_id"),
                                               SETTLEMENTS.c.version == sa.bindparam("b_version")))


async def on_settlement_reported(ctx: HubContext, uow: UnitOfWork, msg: SettlementReported) -> None:
    row = (await uow.execute(_VERSION, {"b_id": msg.setl_id})).first()
    values = {"version": msg.version, "use": msg.use, "infno": msg.infno, "fixmedins_code": msg.fixmedins_code,
              "institution_admdvs": msg.institution_admdvs, "payer_admdvs": msg.payer_admdvs,
              "psn_no": msg.psn_no, "medfee_fen": msg.medfee_fen, "acct_pay_fen": msg.acct_pay_fen,
              "wallet_pay_fen": msg.wallet_pay_fen, "quota_pay_fen": msg.quota_pay_fen,
              "cash_pay_fen": msg.cash_pay_fen, "settled_at": msg.settled_at, "cancelled": msg.effect == "REFUND"}
    newer = row is None or msg.version > row.version
    if row is None:
        await uow.execute(_NEW, {"setl_id": msg.setl_id, **values})
    elif newer:
        await uow.execute(_NEWER, {"b_id": msg.setl_id, "b_version": row.version, **values})
    if msg.wallet_pay_fen:
        sign = 1 if msg.effect == "CHARGE" else -1
        holder_province = province_of(msg.payer_admdvs)
        await ops.record_use(uow, ref=f"SETTLEMENT:{msg.setl_id}:{msg.version}", from_admdvs=holder_province,
                             to_admdvs=holder_province, use=msg.use, person_key=msg.psn_no,
                             amount_fen=sign * msg.wallet_pay_fen, at=msg.occurred_at,
                             kind=statistics.WALLET_USE, scope=None, payer_psn_no=msg.psn_no)
    if msg.effect == "CHARGE" and newer:
        # The row as just written (not read back: one round trip less per settlement); a CHARGE is in effect.
        await risk.on_settlement(ctx, uow, SimpleNamespace(setl_id=msg.setl_id, **values))
