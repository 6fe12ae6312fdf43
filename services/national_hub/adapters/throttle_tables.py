"""The identity service's sign-in throttle (issue 13, API.md "Identity"): failures counted per person (keyed hash of
the ID number, never the number) and per client address, in the database so that every hub replica sees the same
counts and they survive a restart."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from shared.messaging_tables import BIGINT


class SignInThrottle(SQLModel, table=True):
    """One counting window per subject (`id:<keyed hash>` or `addr:<address>`): failures since window_started_at;
    blocked_until set when the limit is reached."""

    __tablename__ = "sign_in_throttle"

    subject: str = Field(primary_key=True, max_length=80)
    failures: int = Field(default=0, sa_type=BIGINT)
    window_started_at: datetime
    blocked_until: datetime | None = None
    updated_at: datetime


THROTTLE_TABLES = (SignInThrottle,)
