"""Clearing arithmetic, pure: obligations (debtor province owes creditor province an amount) netted per
province pair and per province. Every obligation adds to one province what it takes from another, so the
net positions always sum to zero (asserted: a bug, not bad input, could break it)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Obligation:
    debtor_admdvs: str
    creditor_admdvs: str
    amount_fen: int  # negative: withdrawn (a cancelled purchase, a returned quota spend)


@dataclass(frozen=True)
class PairPosition:
    """`payer_admdvs` pays `payee_admdvs` this net amount (always >= 0; the pair is ordered so)."""

    payer_admdvs: str
    payee_admdvs: str
    net_fen: int


def net_positions(obligations: Iterable[Obligation]) -> tuple[dict[str, int], list[PairPosition]]:
    """Per province: what it receives (+) or pays (-). Per pair: who pays whom, netted both ways."""
    per_province: dict[str, int] = {}
    per_pair: dict[tuple[str, str], int] = {}
    for ob in obligations:
        if ob.debtor_admdvs == ob.creditor_admdvs or ob.amount_fen == 0:
            continue
        per_province[ob.debtor_admdvs] = per_province.get(ob.debtor_admdvs, 0) - ob.amount_fen
        per_province[ob.creditor_admdvs] = per_province.get(ob.creditor_admdvs, 0) + ob.amount_fen
        a, b = sorted((ob.debtor_admdvs, ob.creditor_admdvs))
        # Seen from the pair (a, b): positive means a owes b.
        per_pair[(a, b)] = per_pair.get((a, b), 0) + (ob.amount_fen if ob.debtor_admdvs == a else -ob.amount_fen)
    assert sum(per_province.values()) == 0, "net positions must sum to zero"
    pairs = [PairPosition(a, b, net) if net >= 0 else PairPosition(b, a, -net)
             for (a, b), net in sorted(per_pair.items()) if net != 0]
    return dict(sorted(per_province.items())), pairs
