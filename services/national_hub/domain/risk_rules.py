"""Risk rules asked for publicly (DOMAIN.md): many transfers in a short time, a new binding followed by a
large drain, large remote purchases. Pure: the caller gathers the facts, the rule says whether to alert.
Thresholds are policy, so they come from settings with these defaults."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class RiskPolicy:
    rapid_transfers_count: int = 5  # transfers credited to one person ...
    rapid_transfers_window_s: float = 3600.0  # ... within this window
    new_binding_window_s: float = 86_400.0  # a binding younger than this ...
    new_binding_drain_fen: int = 150_000  # ... receiving at least this much at once
    large_remote_purchase_fen: int = 100_000  # a cross-province pharmacy payment from accounts of this size


def rapid_transfers(policy: RiskPolicy, credited_in_window: int) -> bool:
    return credited_in_window >= policy.rapid_transfers_count


def new_binding_drain(policy: RiskPolicy, binding_created_at: datetime, now: datetime, amount_fen: int) -> bool:
    young = now - binding_created_at < timedelta(seconds=policy.new_binding_window_s)
    return young and amount_fen >= policy.new_binding_drain_fen


def large_remote_purchase(policy: RiskPolicy, amount_fen: int) -> bool:
    return amount_fen >= policy.large_remote_purchase_fen
