"""The wire as the contract tests see it: golden samples (tests/contract/samples), the shape of a JSON value,
and what every consumer does with a message a producer committed to its outbox (`consumer_accepts`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from shared.contracts.envelope import Envelope
from shared.contracts.events import EVENT_TYPES, Payload, TransferCancel, TransferCredit

SAMPLES = Path(__file__).parents[1] / "contract" / "samples"
P = TypeVar("P", bound=Payload)


def load_sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SAMPLES / name).read_bytes())
    return loaded


def event_sample_name(event_type: str) -> str:
    return f"{event_type}.json"


def key_tree(value: Any) -> Any:
    """The shape of a JSON value: nested keys only (a list by its first item). Two messages with the same tree
    carry the same fields; values are the samples' business."""
    if isinstance(value, dict):
        return {key: key_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [key_tree(value[0])] if value else []
    return None


def naive_datetimes(model: BaseModel, where: str = "") -> list[str]:
    """Fields holding a datetime without a zone: on the wire that is an instant nobody can place."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            found.append(where + name)
        elif isinstance(value, BaseModel):
            found.extend(naive_datetimes(value, f"{where}{name}."))
    return found


# ------------------------------------------------------------------------------------------ the wire


@dataclass(frozen=True)
class Wired:
    """One message as a producer committed it to its outbox: Kafka topic, key, decoded envelope."""

    topic: str
    key: str
    envelope: Envelope

    @property
    def type(self) -> str:
        return self.envelope.type


def consumer_accepts(wired: Wired) -> Payload:
    """What every consumer does with a message, plus what the contract promises about it: the consumer's class
    for the type validates the data; the shape equals the golden sample's; the key is the id of the thing the
    message is about (topics.py: that keeps one transfer's messages in one partition, in order), or for what
    changes a receiver's wallet, the receiver."""
    env = wired.envelope
    assert env.type in EVENT_TYPES, f"{env.type} has no consumer schema in shared.contracts.events"
    payload = EVENT_TYPES[env.type].model_validate(env.data)
    sample = load_sample(event_sample_name(env.type))
    assert key_tree(env.model_dump(mode="json")) == key_tree(sample), (
        f"{env.type} as produced differs in shape from its golden sample {event_sample_name(env.type)}")
    assert env.time.tzinfo is not None and not naive_datetimes(payload), (
        f"{env.type} carries naive datetimes: {naive_datetimes(payload)}")
    assert env.id and env.source and env.trace_id and wired.key
    about = _subject_id(payload)
    if about is not None:
        assert wired.key == about, f"{env.type} keyed by {wired.key!r}, not by the id it is about ({about!r})"
    return payload


def accepted_as(wired: Wired, payload_type: type[P]) -> P:
    """`consumer_accepts`, for a message the test knows the type of: its payload as that class."""
    payload = consumer_accepts(wired)
    assert isinstance(payload, payload_type), f"{wired.type} is not a {payload_type.__name__}"
    return payload


def _subject_id(payload: Payload) -> str | None:
    if isinstance(payload, TransferCredit):
        return payload.receiver_psn_no  # topics.py: what the hub asks of a wallet is keyed by its owner
    if isinstance(payload, TransferCancel):
        return None  # keyed by the receiver too, whom the cancel does not name
    data = payload.model_dump()
    if "transfer_id" in data:
        return str(data["transfer_id"])
    if isinstance(data.get("binding"), dict):
        return str(data["binding"]["binding_id"])
    return None


def with_unknown_fields(env: Envelope) -> Envelope:
    """The same message as a newer producer would send it (a field added within the version, at both levels)."""
    raw = orjson.loads(env.to_bytes())
    raw["x_added_later"] = {"any": ["thing"]}
    raw["data"]["x_added_later"] = 42
    if isinstance(raw["data"].get("binding"), dict):
        raw["data"]["binding"]["x_added_later"] = "yes"
    return Envelope.from_bytes(orjson.dumps(raw))

