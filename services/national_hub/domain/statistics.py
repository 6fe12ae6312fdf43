"""National mutual-aid statistics as NHSA publishes them (API.md "Operator API" stats): person-times and amounts
by month, kind, use, province pair and scope. Pure helpers; the hub stores one fact per use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

TRANSFER = "transfer"
QUOTA_USE = "quota_use"
WALLET_USE = "wallet_use"
KINDS = (TRANSFER, QUOTA_USE, WALLET_USE)
USES = ("transfer", "pharmacy", "outpatient", "inpatient", "premium")
SAME_POOL = "same_pool"
IN_PROVINCE = "in_province"
CROSS_PROVINCE = "cross_province"
CSV_COLUMNS = ("month", "kind", "use", "from_admdvs", "to_admdvs", "scope", "person_times", "amount_fen")


def scope_of(pooling_a: str | None, pooling_b: str | None) -> str:
    """Compare two persons' pooling regions (统筹区): the same one, the same province (first two digits), or not.
    A person the directory knows no pooling region of counts by province only (never as same_pool)."""
    if pooling_a and pooling_b and pooling_a == pooling_b:
        return SAME_POOL
    if pooling_a and pooling_b and pooling_a[:2] == pooling_b[:2]:
        return IN_PROVINCE
    return CROSS_PROVINCE


def person_times(amount_fen: int) -> int:
    """One use is one person-time; a cancel or return (negative) takes its person-time back."""
    return (amount_fen > 0) - (amount_fen < 0)


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    by_use: dict[str, dict[str, int]] = {}
    by_scope: dict[str, dict[str, int]] = {}
    count = amount = 0
    for row in rows:
        for key, bucket_map in ((str(row["use"]), by_use), (str(row["scope"]), by_scope)):
            if row["scope"] is None and bucket_map is by_scope:
                continue  # wallet uses have no scope: they are one person's spending
            bucket = bucket_map.setdefault(key, {"person_times": 0, "amount_fen": 0})
            bucket["person_times"] += int(row["person_times"])
            bucket["amount_fen"] += int(row["amount_fen"])
        count += int(row["person_times"])
        amount += int(row["amount_fen"])
    return {"totals_by_use": by_use, "totals_by_scope": by_scope, "person_times": count, "amount_fen": amount}


def to_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """One line per row, no currency symbol: amounts in fen (ops_console.md §4: CSV carries fen)."""
    lines = [",".join(CSV_COLUMNS)]
    for row in rows:
        lines.append(",".join("" if row[c] is None else str(row[c]) for c in CSV_COLUMNS))
    return "\r\n".join(lines) + "\r\n"
