"""A quota's life as two state machines, pure (issue 10.1): the giver's grant and the relative's mirror of it.

Giver's node (`Grant`, table quota_grants): OPEN --set_limit--> OPEN (a new version each time) --end--> CLOSING
--mirrored(closed)--> CLOSED. While OPEN the giver may raise or lower the limit; ending it (the binding ended, or
its year is past) asks the mirror to close; the mirror's closing report makes it CLOSED. Every mirror report
refreshes what the giver's node knows of the mirror (`mirrored`), and tells it what part of the reserve can go
back to the personal account (`release_fen`).

Relative's node (`Mirror`, table quota_mirrors): OPEN --spend / give_back--> OPEN --close--> CLOSED. A QuotaSet
newer than the one applied sets the limit (never below what was spent; a closing one closes it at what was
spent); an older one is ignored. A closed mirror spends nothing more and stays at what was spent.

The arithmetic is in quota_rules.py. Each transition returns the new value; `journal` is the entry the audit
journal records for it (API.md "Audit chain": every state change of a quota)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from services.province_node.domain import quota_rules
from services.province_node.domain.errors import DomainError

JOURNAL_KIND = "quota.state"


class GrantState(StrEnum):
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"


class QuotaEvent(StrEnum):
    """What happened to a quota, as its journal entry names it."""

    SET = "set"  # giver: the limit asked for; relative: a QuotaSet applied
    ENDING = "ending"  # giver: ended, waiting for the mirror to close
    MIRRORED = "mirrored"  # giver: the mirror's state arrived (perhaps releasing reserve, perhaps closing)
    SPENT = "spent"  # relative: money spent from the mirror
    RETURNED = "returned"  # relative: a spend given back (cancel, reversal)
    ENDED = "ended"  # relative: closed because the binding ended


class InvalidQuotaTransition(DomainError):
    def __init__(self, message: str) -> None:
        super().__init__("QUOTA_CLOSED", message)


@dataclass(frozen=True)
class Grant:
    """The giver's side of one binding's quota for one year."""

    binding_id: str
    year: int
    annual_quota_fen: int
    version: int
    state: GrantState
    mirror_quota_fen: int = 0
    mirror_used_fen: int = 0

    @classmethod
    def new(cls, binding_id: str, year: int) -> Grant:
        return cls(binding_id, year, annual_quota_fen=0, version=0, state=GrantState.OPEN)

    @classmethod
    def of(cls, row: Any) -> Grant:
        """From a quota_grants row (or anything with its fields)."""
        return cls(row.binding_id, int(row.year), int(row.annual_quota_fen), int(row.version),
                   GrantState(row.state), int(row.mirror_quota_fen), int(row.mirror_used_fen))

    @property
    def requested_fen(self) -> int:
        """What the giver asks the relative may spend: nothing once the quota is ending."""
        return self.annual_quota_fen if self.state is GrantState.OPEN else 0

    def set_limit(self, annual_quota_fen: int) -> Grant:
        if self.state is not GrantState.OPEN:
            raise InvalidQuotaTransition(f"this quota has ended ({self.state})")
        return replace(self, annual_quota_fen=annual_quota_fen, version=self.version + 1)

    def reserve_to_add_fen(self, reserved_fen: int) -> int:
        """What must move from the personal account to the reserve for this grant (a raise), else 0."""
        needed = quota_rules.reserve_needed_fen(self.annual_quota_fen, self.mirror_quota_fen, self.mirror_used_fen)
        return max(0, needed - reserved_fen)

    def end(self) -> Grant:
        if self.state is not GrantState.OPEN:
            raise InvalidQuotaTransition(f"this quota has already ended ({self.state})")
        return replace(self, annual_quota_fen=0, version=self.version + 1, state=GrantState.CLOSING)

    def mirrored(self, mirror_quota_fen: int, mirror_used_fen: int, closed: bool) -> Grant:
        """The relative's node reported its mirror. A closed mirror closes an ending grant; an OPEN grant stays
        OPEN (the mirror closed on its own, say because the binding ended there first: the end follows)."""
        state = GrantState.CLOSED if closed and self.state is not GrantState.OPEN else self.state
        return replace(self, mirror_quota_fen=mirror_quota_fen, mirror_used_fen=mirror_used_fen, state=state)

    def release_fen(self, reserved_fen: int) -> int:
        """What the reserve holds beyond what the relative may still spend: back to the personal account."""
        return quota_rules.release_fen(reserved_fen, self.requested_fen, self.mirror_quota_fen,
                                       self.mirror_used_fen)

    def journal(self, event: QuotaEvent, **extra: Any) -> dict[str, Any]:
        return {"side": "giver", "event": str(event), "year": self.year, "state": str(self.state),
                "annual_quota_fen": self.annual_quota_fen, "version": self.version,
                "mirror_quota_fen": self.mirror_quota_fen, "mirror_used_fen": self.mirror_used_fen, **extra}


@dataclass(frozen=True)
class Mirror:
    """The relative's side of one binding's quota for one year: what may be spent here without asking."""

    binding_id: str
    year: int
    annual_quota_fen: int
    used_fen: int
    version: int
    closed: bool

    @classmethod
    def of(cls, row: Any) -> Mirror:
        """From a quota_mirrors row (or anything with its fields)."""
        return cls(row.binding_id, int(row.year), int(row.annual_quota_fen), int(row.used_fen), int(row.version),
                   bool(row.closed))

    @classmethod
    def first(cls, binding_id: str, year: int, requested_fen: int, closing: bool, version: int) -> Mirror:
        """The first QuotaSet of a binding's year at the relative's node."""
        limit = quota_rules.apply_to_mirror(requested_fen, closing, 0)
        return cls(binding_id, year, limit.annual_quota_fen, 0, version, limit.closed)

    @property
    def state(self) -> str:
        return "CLOSED" if self.closed else "OPEN"

    @property
    def available_fen(self) -> int:
        return max(0, self.annual_quota_fen - self.used_fen)

    def apply_set(self, requested_fen: int, closing: bool, version: int) -> Mirror | None:
        """A QuotaSet: applied when newer than the one applied (None: an older one, ignored). A closed mirror
        stays closed."""
        if version <= self.version:
            return None
        limit = quota_rules.apply_to_mirror(requested_fen, closing or self.closed, self.used_fen)
        return replace(self, annual_quota_fen=limit.annual_quota_fen, closed=limit.closed, version=version)

    def spend(self, amount_fen: int) -> Mirror:
        quota_rules.check_spend(limit_fen=self.annual_quota_fen, used_fen=self.used_fen, closed=self.closed,
                                amount_fen=amount_fen)
        return replace(self, used_fen=self.used_fen + amount_fen)

    def give_back(self, amount_fen: int) -> Mirror:
        """A spend undone; a closed mirror stays at what was spent, so the rest goes back to the giver."""
        used_fen = max(0, self.used_fen - amount_fen)
        return replace(self, used_fen=used_fen,
                       annual_quota_fen=used_fen if self.closed else self.annual_quota_fen)

    def close(self) -> Mirror:
        """The binding ended: nothing more is spent; the limit stops at what was spent."""
        return replace(self, annual_quota_fen=self.used_fen, closed=True)

    def journal(self, event: QuotaEvent, **extra: Any) -> dict[str, Any]:
        return {"side": "relative", "event": str(event), "year": self.year, "state": self.state,
                "annual_quota_fen": self.annual_quota_fen, "used_fen": self.used_fen, "version": self.version,
                **extra}
