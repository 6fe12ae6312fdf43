"""Settlements as the gateway reports them for supervision (supervision.settlement.reported.v1, issue 12): every
settlement of every province's payer, in- and cross-province, so that investigators see a person's whole
activity, the settlement rules run, and statistics count wallet uses (quota uses come from the quota spends the
relative's node reports). The hub keeps the newest version of each settlement; a change of effect (CHARGE /
REFUND) counts once, by its (setl_id, version)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from services.national_hub.adapters.ops_tables import SupervisedSettlement
from services.national_hub.domain import statistics
from services.national_hub.service_layer import ops, risk
from services.national_hub.service_layer.context import HubContext
from shared.contracts.events import SettlementReported
from shared.db import PreparedOnConflict, UnitOfWork
from shared.regions import province_of
from shared.tables import table

SETTLEMENTS = table(SupervisedSettlement)


def _or_replace_if_newer(insert: Any) -> Any:
    return insert.on_conflict_do_update(
        index_elements=["setl_id"],
        set_={column.name: insert.excluded[column.name] for column in SETTLEMENTS.c if column.name != "setl_id"},
        where=SETTLEMENTS.c.version < insert.excluded.version).returning(SETTLEMENTS.c.version)


# The settlement inserted, or its row replaced where this version is newer; a row is returned in either case,
# none for older news. One statement where the locked read of the version and the write took two; on PostgreSQL
# a concurrent first insert of the same settlement (another replica) is waited for, then compared. Built once:
# every settlement in the federation runs it.
_NEW_OR_NEWER = PreparedOnConflict(SETTLEMENTS, _or_replace_if_newer)


async def on_settlement_reported(ctx: HubContext, uow: UnitOfWork, msg: SettlementReported) -> None:
    values = {"version": msg.version, "use": msg.use, "infno": msg.infno, "fixmedins_code": msg.fixmedins_code,
              "institution_admdvs": msg.institution_admdvs, "payer_admdvs": msg.payer_admdvs,
              "psn_no": msg.psn_no, "medfee_fen": msg.medfee_fen, "acct_pay_fen": msg.acct_pay_fen,
              "wallet_pay_fen": msg.wallet_pay_fen, "quota_pay_fen": msg.quota_pay_fen,
              "cash_pay_fen": msg.cash_pay_fen, "settled_at": msg.settled_at, "cancelled": msg.effect == "REFUND"}
    written = await uow.execute(_NEW_OR_NEWER.on(uow), {"setl_id": msg.setl_id, **values})
    newer = written.first() is not None
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
