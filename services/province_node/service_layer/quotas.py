"""Quotas (共济额度): the giver's node reserves part of the personal account for the year; the relative's node
holds a mirror it can spend locally at the pharmacy or on premiums, without a synchronous call to the giver's
province while a patient waits. (Filled in by the quota work; the POS path uses only the functions below.)"""

from __future__ import annotations

from dataclasses import dataclass

from shared.db import ReadView, UnitOfWork


@dataclass(frozen=True)
class SpendableQuota:
    binding_id: str
    available_fen: int


async def spendable_quotas(view: UnitOfWork | ReadView, receiver_psn_no: str, year: int) -> list[SpendableQuota]:
    """Quotas received by this person for `year`, oldest binding first, with what is left to spend."""
    return []


async def spend_quota(uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str) -> None:
    """Spend from a received quota's mirror (inside the caller's transaction); `ref` names the payment."""
    raise NotImplementedError("quota mirrors come with the quota work")


async def return_quota_spend(uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str) -> None:
    """Undo a spend (POS cancel or reversal)."""
    raise NotImplementedError("quota mirrors come with the quota work")
