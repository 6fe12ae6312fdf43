"""Sign-in throttling (issue 13, API.md "Identity"): five failed sign-ins for one `id_no` within 15 minutes, or
thirty from one client address, and that person or address is answered 429 TOO_MANY_ATTEMPTS for the next 15
minutes, even with the right credentials. A success resets the person's count (not the address's).

Counting: a fixed window per subject that opens at its first failure and lasts 15 minutes; the failure that
reaches the limit blocks the subject for 15 minutes from then. The counts live in the hub's database
(`sign_in_throttle`), so every hub replica sees the same numbers and a restart forgets nothing; a person is named
there only by the keyed hash of their ID number, and a throttled attempt is logged with the ID masked.

Only AUTHENTICATION_FAILED counts (wrong name, password or face); a malformed ID number (422) names no person."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from services.national_hub.adapters.throttle_tables import SignInThrottle
from services.national_hub.service_layer.context import HubContext
from shared.db import ReadView, UnitOfWork, for_update, in_unit_of_work
from shared.errors import ApiError
from shared.ids import InvalidIdNo, id_hash, mask_id_no
from shared.tables import table

log = logging.getLogger("yibao.hub.identity")
THROTTLE = table(SignInThrottle)
WINDOW = timedelta(minutes=15)
BLOCK = timedelta(minutes=15)
MAX_FAILURES_PER_PERSON = 5
MAX_FAILURES_PER_ADDRESS = 30


@dataclass(frozen=True)
class Subjects:
    person: str | None  # "id:<keyed hash>", None for an ID number that fails GB 11643
    address: str | None  # "addr:<client address>", None when the server cannot tell
    id_no_masked: str

    def limits(self) -> list[tuple[str, int]]:
        pairs = [(self.person, MAX_FAILURES_PER_PERSON), (self.address, MAX_FAILURES_PER_ADDRESS)]
        return [(subject, limit) for subject, limit in pairs if subject is not None]


def subjects_of(ctx: HubContext, id_no: str, client_address: str | None) -> Subjects:
    try:
        person: str | None = "id:" + id_hash(ctx.settings.id_hash_key_bytes, id_no)
    except InvalidIdNo:
        person = None
    address = f"addr:{client_address[:70]}" if client_address else None
    masked = mask_id_no(id_no) if len(id_no) >= 8 else "*" * len(id_no)
    return Subjects(person, address, masked)


async def refuse_if_blocked(ctx: HubContext, subjects: Subjects) -> bool:
    """Before the credentials are checked: 429 when the person or the address is blocked. Returns whether the
    person has failures on record (a success must then reset them)."""
    names = [subject for subject, _ in subjects.limits()]
    if not names:
        return False
    now = ctx.clock.now()
    async with ReadView(ctx.db) as view:
        rows = (await view.execute(sa.select(THROTTLE).where(THROTTLE.c.subject.in_(names)))).all()
    for row in rows:
        if row.blocked_until is not None and row.blocked_until > now:
            which = "person" if row.subject == subjects.person else "address"
            log.warning("sign-in throttled (%s): id %s from %s, blocked until %s", which, subjects.id_no_masked,
                        subjects.address, row.blocked_until.isoformat())
            raise ApiError(429, "TOO_MANY_ATTEMPTS",
                           "too many failed sign-ins; try again in 15 minutes")
    return any(row.subject == subjects.person and row.failures > 0 for row in rows)


def _counted(row: object | None, now: datetime, limit: int) -> dict[str, object]:
    """The subject's row after one more failure."""
    window_started_at = getattr(row, "window_started_at", None)
    if row is None or window_started_at is None or now - window_started_at >= WINDOW:
        failures, started = 1, now
    else:
        failures, started = int(getattr(row, "failures", 0)) + 1, window_started_at
    blocked_until = now + BLOCK if failures >= limit else None
    return {"failures": failures, "window_started_at": started, "blocked_until": blocked_until, "updated_at": now}


async def record_failure(ctx: HubContext, subjects: Subjects) -> None:
    """After AUTHENTICATION_FAILED: one more failure for the person and the address, in one transaction."""

    async def count(uow: UnitOfWork) -> None:
        now = ctx.clock.now()
        for subject, limit in subjects.limits():
            # A subject's first failure has no row to lock: two replicas counting it take turns on its name.
            await uow.lock_name(f"sign-in|{subject}")
            row = (await uow.execute(for_update(sa.select(THROTTLE).where(THROTTLE.c.subject == subject)))).first()
            values = _counted(row, now, limit)
            if row is None:
                await uow.execute(sa.insert(THROTTLE).values(subject=subject, **values))
            else:
                await uow.execute(sa.update(THROTTLE).where(THROTTLE.c.subject == subject).values(**values))
            if values["blocked_until"] is not None:
                log.warning("sign-in blocked for 15 minutes (%s failures): %s", values["failures"],
                            "id " + subjects.id_no_masked if subject == subjects.person else subjects.address)

    await in_unit_of_work(ctx.db, count)


async def reset_person(ctx: HubContext, subjects: Subjects) -> None:
    """A successful sign-in clears the person's failures (the address keeps its count)."""
    person = subjects.person
    if person is None:
        return

    async def clear(uow: UnitOfWork) -> None:
        await uow.execute(sa.delete(THROTTLE).where(THROTTLE.c.subject == person))

    await in_unit_of_work(ctx.db, clear)
