"""The event envelope: `{type, id, source, time, trace_id, data}`; `id` is the dedupe key for consumers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    id: str
    source: str
    time: datetime
    trace_id: str
    data: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate(orjson.loads(raw))


def new_envelope(message: BaseModel, *, source: str, trace_id: str, message_id: str | None = None,
                 now: datetime | None = None) -> Envelope:
    """Wrap a payload; its `TYPE` class attribute names the versioned event type."""
    return Envelope(
        type=str(getattr(message, "TYPE")),  # noqa: B009 - payload classes declare TYPE as a ClassVar
        id=message_id or uuid.uuid4().hex,
        source=source,
        time=now or datetime.now(UTC),
        trace_id=trace_id,
        data=message.model_dump(mode="json"),
    )
