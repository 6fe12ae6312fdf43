"""What a person can pay from at a till or a hospital: their personal account, their wallet, and the quotas their
relatives set for them this year (payment_split.Funds), with the balances an answer reports."""

from __future__ import annotations

from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger, quota_rules
from services.province_node.domain.payment_split import Funds
from services.province_node.service_layer import quotas
from services.province_node.service_layer.context import NodeContext
from shared.contracts.internal_api import PosBalances
from shared.db import ReadView, UnitOfWork


async def funds_of(ctx: NodeContext, view: UnitOfWork | ReadView, psn_no: str, *,
                   lock: bool = False) -> tuple[Funds, PosBalances]:
    """`lock`: the person's account rows locked until the unit of work ends (ledger_repo.balances)."""
    pa, wallet = ledger.personal_account(psn_no), ledger.wallet_account(psn_no)
    held = await ledger_repo.balances(view, [pa, wallet], lock=lock)
    spendable = await quotas.spendable_quotas(view, psn_no, quota_rules.quota_year(ctx.clock.now()))
    return funds_from(held.get(pa), held.get(wallet),
                      tuple((quota.binding_id, quota.available_fen) for quota in spendable))


def funds_from(personal_account_fen: int | None, wallet_fen: int | None,
               quotas_left: tuple[tuple[str, int], ...]) -> tuple[Funds, PosBalances]:
    """The funds a split may take and the balances an answer reports (None: no such account), from the balances
    and the quotas left to spend, oldest binding first."""
    return (Funds(personal_account_fen or 0, wallet_fen or 0, quotas_left),
            PosBalances(personal_account_fen=personal_account_fen, wallet_fen=wallet_fen,
                        quota_fen=sum(left_fen for _, left_fen in quotas_left)))
