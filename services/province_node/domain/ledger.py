"""Double-entry postings. A posting is a set of legs (account, signed amount in fen) summing to zero: money
only ever moves between accounts, so the sum over every account of a node's ledger is zero at all times.

Citizen accounts (personal account, wallet, quota reserve) may never go below zero; system accounts may:
FUNDING is the payroll side of monthly contributions, CLEARING the node's net position towards the other
provinces (and its own pharmacies), IN_FLIGHT what was sent but not yet settled."""

from __future__ import annotations

from dataclasses import dataclass

FUNDING = "SYS:FUNDING"
IN_FLIGHT = "SYS:IN_FLIGHT"
CLEARING = "SYS:CLEARING"
# Relative's side of quota spending: what the givers' provinces owe this node for quota money it paid out.
QUOTA_DUE = "SYS:QUOTA_DUE"
# Resident premiums received for this province's insured.
PREMIUM_INCOME = "SYS:PREMIUM_INCOME"
# A premium paid for a person whose year was meanwhile paid by someone else (the reservation had expired):
# the payer's money arrived and is kept here, visible, for an operator to return; never dropped.
PREMIUM_SUSPENSE = "SYS:PREMIUM_SUSPENSE"
SYSTEM_ACCOUNTS = (FUNDING, IN_FLIGHT, CLEARING, QUOTA_DUE, PREMIUM_INCOME, PREMIUM_SUSPENSE)


def personal_account(psn_no: str) -> str:
    return f"PA:{psn_no}"


def wallet_account(psn_no: str) -> str:
    return f"WALLET:{psn_no}"


def quota_reserve_account(binding_id: str, year: int) -> str:
    """Giver's side: the part of the giver's personal account reserved for one binding's quota of a year."""
    return f"QUOTA:{binding_id}:{year}"


def may_go_negative(account_id: str) -> bool:
    return account_id.startswith("SYS:")


@dataclass(frozen=True)
class Posting:
    kind: str  # what happened, e.g. TRANSFER_HOLD; kept on the journal entry
    ref: str  # the business id it belongs to (transfer_id, psn_no, ...)
    legs: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        assert self.legs, "a posting moves money"
        assert sum(amount for _, amount in self.legs) == 0, f"unbalanced posting {self}"
        assert all(isinstance(amount, int) and amount != 0 for _, amount in self.legs), f"bad leg in {self}"


def move(kind: str, ref: str, from_account: str, to_account: str, amount_fen: int) -> Posting:
    """The common two-leg posting: `amount_fen` leaves one account and arrives in another."""
    assert amount_fen > 0, "a move carries a positive amount"
    return Posting(kind, ref, ((from_account, -amount_fen), (to_account, amount_fen)))
