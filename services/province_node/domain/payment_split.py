"""How a pharmacy bill is paid (DOMAIN.md "Paying at a designated pharmacy"). Pure: the caller passes the
balances it read inside the same unit of work that will post the result.

The whole bill is the person's share (fund_pay_sumamt is 0). Of it, only `eligible_fen` (drugs, devices,
services in the catalogue) may come from accounts, in this order: own personal account (acct_pay), then the
wallet, then quotas received from relatives, oldest binding first (both reported as acct_mulaid_pay). What is
left, and every ineligible item, is cash (psn_cash_pay)."""

from __future__ import annotations

from dataclasses import dataclass

from services.province_node.domain import ledger
from services.province_node.domain.ledger import Posting


@dataclass(frozen=True)
class Funds:
    personal_account_fen: int
    wallet_fen: int
    quotas: tuple[tuple[str, int], ...] = ()  # (binding_id, available_fen), in spending order

    def __post_init__(self) -> None:
        assert self.personal_account_fen >= 0 and self.wallet_fen >= 0, f"negative balance in {self}"
        assert all(available >= 0 for _, available in self.quotas), f"negative quota in {self}"


@dataclass(frozen=True)
class Split:
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_parts: tuple[tuple[str, int], ...]  # (binding_id, amount_fen), only positive parts
    cash_pay_fen: int

    @property
    def quota_pay_fen(self) -> int:
        return sum(amount for _, amount in self.quota_parts)

    @property
    def mulaid_pay_fen(self) -> int:
        """acct_mulaid_pay (个人账户共济支付): wallet and quotas together."""
        return self.wallet_pay_fen + self.quota_pay_fen

    @property
    def account_pay_fen(self) -> int:
        """Everything paid from accounts: what the pharmacy's province is owed through clearing."""
        return self.acct_pay_fen + self.mulaid_pay_fen


def split_payment(medfee_fen: int, eligible_fen: int, funds: Funds, *, use_accounts: bool) -> Split:
    assert medfee_fen > 0 and 0 <= eligible_fen <= medfee_fen, (medfee_fen, eligible_fen)
    # acct_used_flag 0: the person chose to pay everything in cash.
    payable_fen = eligible_fen if use_accounts else 0
    acct_fen = min(payable_fen, funds.personal_account_fen)
    payable_fen -= acct_fen
    wallet_fen = min(payable_fen, funds.wallet_fen)
    payable_fen -= wallet_fen
    quota_parts: list[tuple[str, int]] = []
    for binding_id, available_fen in funds.quotas:
        part_fen = min(payable_fen, available_fen)
        if part_fen > 0:
            quota_parts.append((binding_id, part_fen))
            payable_fen -= part_fen
    paid_from_accounts_fen = (eligible_fen if use_accounts else 0) - payable_fen
    split = Split(acct_fen, wallet_fen, tuple(quota_parts), medfee_fen - paid_from_accounts_fen)
    assert split.cash_pay_fen >= medfee_fen - eligible_fen, split
    assert split.account_pay_fen + split.cash_pay_fen == medfee_fen, split
    return split


def account_posting(kind: str, ref: str, psn_no: str, acct_fen: int, wallet_fen: int, *,
                    refund: bool) -> Posting | None:
    """The ledger side of a POS payment: personal account and wallet -> SYS:CLEARING (the pharmacy is paid
    through clearing, wherever it is), or back for a refund. None when accounts paid nothing (all cash).
    Quota parts are not here: they are spent through the quota mirrors (service_layer/quotas.py)."""
    sign = 1 if refund else -1
    legs = [(account_id, sign * amount_fen) for account_id, amount_fen in
            ((ledger.personal_account(psn_no), acct_fen), (ledger.wallet_account(psn_no), wallet_fen))
            if amount_fen > 0]
    if not legs:
        return None
    return Posting(kind, ref, (*legs, (ledger.CLEARING, -sign * (acct_fen + wallet_fen))))
