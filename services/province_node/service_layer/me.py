"""The citizen's own view (`GET /v1/me`): person, balances, wallet and quotas in one read."""

from __future__ import annotations

from typing import Any

from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import person_by_psn_no
from services.province_node.service_layer.quotas import quotas_of
from shared.db import ReadView
from shared.ids import mask_name, mask_phone


async def me(ctx: NodeContext, view: ReadView, psn_no: str) -> dict[str, Any]:
    person = await person_by_psn_no(view, psn_no)
    held = await ledger_repo.balances(view, [ledger.personal_account(psn_no), ledger.wallet_account(psn_no)])
    wallet_fen = held.get(ledger.wallet_account(psn_no))
    granted, received = await quotas_of(view, psn_no)
    return {
        "psn_no": person.psn_no,
        "name_masked": mask_name(person.name),
        "id_no_masked": person.id_no_masked,
        "phone_masked": mask_phone(person.phone),
        "insutype": person.insutype,
        "insuplc_admdvs": ctx.admdvs,
        "pooling_admdvs": person.pooling_admdvs,
        "personal_account_fen": held.get(ledger.personal_account(psn_no)) if person.insutype == "310" else None,
        "wallet": None if wallet_fen is None else {"status": "OPEN", "balance_fen": wallet_fen},
        "quotas_granted": granted,
        "quotas_received": received,
    }
