"""Transfer limits (DOMAIN.md, 2025 practice, each configurable): at most N transfers per giver per day, at
most M fen each, none in the quiet hours (Asia/Shanghai). Pure: the caller passes the time and the count."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from services.province_node.domain.errors import DomainError
from shared.clock import SHANGHAI


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """`22:00-06:00`; empty disables."""
        text = text.strip()
        if not text:
            return None
        start_text, _, end_text = text.partition("-")
        return cls(time.fromisoformat(start_text.strip()), time.fromisoformat(end_text.strip()))

    def contains(self, local: time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # the window wraps midnight


@dataclass(frozen=True)
class TransferPolicy:
    max_per_day: int
    max_amount_fen: int
    quiet_hours: QuietHours | None


def shanghai_day(now: datetime) -> str:
    return now.astimezone(SHANGHAI).date().isoformat()


def accept_by(received_at: datetime, cutoff: time) -> datetime:
    """Until when a receiver who must accept may do so: the first `cutoff` (06:00) Asia/Shanghai strictly after
    the transfer arrived (DOMAIN.md: an unaccepted transfer returns to the giver at 06:00 the next day; with the
    default quiet hours nothing arrives between midnight and 06:00, so that is the next calendar day). Shanghai
    keeps no daylight saving time: a wall-clock time names exactly one instant."""
    local = received_at.astimezone(SHANGHAI)
    deadline = datetime.combine(local.date(), cutoff, tzinfo=SHANGHAI)
    if deadline <= local:
        deadline += timedelta(days=1)
    return deadline.astimezone(UTC)


def check_transfer(policy: TransferPolicy, *, amount_fen: int, now: datetime, sent_today: int,
                   balance_fen: int) -> None:
    """Raise the refusal the contract names, most fundamental first."""
    if amount_fen > policy.max_amount_fen:
        raise DomainError("TRANSFER_LIMIT_AMOUNT", f"at most {policy.max_amount_fen} fen per transfer")
    if policy.quiet_hours and policy.quiet_hours.contains(now.astimezone(SHANGHAI).time()):
        q = policy.quiet_hours
        raise DomainError("TRANSFER_QUIET_HOURS", f"no transfers between {q.start:%H:%M} and {q.end:%H:%M}")
    if sent_today >= policy.max_per_day:
        raise DomainError("TRANSFER_LIMIT_DAILY", f"at most {policy.max_per_day} transfers per day")
    if amount_fen > balance_fen:
        raise DomainError("INSUFFICIENT_FUNDS", "the personal account does not hold that much")
