"""Quota arithmetic, pure. The giver's node keeps in reserve exactly what the relative may still spend:
max(the limit the giver now asks for, the limit the relative's mirror applies) minus what was spent. Taking
the larger of the two is what makes lowering safe: money is released only once the mirror has shrunk."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.province_node.domain.errors import DomainError
from shared.clock import SHANGHAI


def quota_year(now: datetime) -> int:
    """Quotas run by calendar year in China's time zone."""
    return now.astimezone(SHANGHAI).year


def reserve_needed_fen(requested_fen: int, mirror_quota_fen: int, used_fen: int) -> int:
    return max(requested_fen, mirror_quota_fen) - used_fen


def release_fen(reserved_fen: int, requested_fen: int, mirror_quota_fen: int, used_fen: int) -> int:
    """What the giver's node can give back to the personal account now (never negative)."""
    return max(0, reserved_fen - max(0, reserve_needed_fen(requested_fen, mirror_quota_fen, used_fen)))


@dataclass(frozen=True)
class MirrorLimit:
    annual_quota_fen: int
    closed: bool


def apply_to_mirror(requested_fen: int, closing: bool, used_fen: int) -> MirrorLimit:
    """The relative's node never lets the limit fall below what was already spent; a closing quota stops at
    what was spent, so nothing more can be spent from it."""
    if closing:
        return MirrorLimit(used_fen, True)
    return MirrorLimit(max(requested_fen, used_fen), False)


def check_spend(*, limit_fen: int, used_fen: int, closed: bool, amount_fen: int) -> None:
    if closed:
        raise DomainError("QUOTA_CLOSED", "this quota has ended")
    if amount_fen > limit_fen - used_fen:
        raise DomainError("QUOTA_EXCEEDED", "the quota does not cover this amount")


def parse_quota_fen(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DomainError("INVALID_AMOUNT", "annual_quota_fen must be a whole number of fen, 0 or more")
    return value
