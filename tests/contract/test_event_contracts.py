"""Kafka message contracts (DESIGN.md "Habits": contracts).

(a) every golden sample parses with its schema and re-serialises to the same JSON, so a renamed or removed
    field breaks here, not in production;
(c) unknown fields are ignored, missing required ones refused; a consumer skips a type it does not know;
(d) every event type has a golden sample.
What the producers' real code writes to their outbox, checked against the consumers' schemas and these samples
message by message, is in tests/integration/test_transfer_event_flows.py."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from services.national_hub.service_layer import messages as hub_messages
from services.province_node.service_layer import messages as node_messages
from shared.contracts.envelope import Envelope
from shared.contracts.events import (
    EVENT_TYPES,
    TransferCancel,
    TransferCredit,
    TransferCreditResult,
    TransferRequested,
    TransferSettled,
)
from shared.db import UnitOfWork
from tests.support.inprocess import DESTINATION, InProcessFederation
from tests.support.wire import SAMPLES, event_sample_name, load_sample, with_unknown_fields

ENVELOPE_KEYS = frozenset(Envelope.model_fields)


def _envelope_samples() -> list[str]:
    """Sample files holding an envelope (other samples, e.g. HTTP bodies, have their own tests)."""
    names = []
    for path in sorted(SAMPLES.glob("*.json")):
        raw = load_sample(path.name)
        if isinstance(raw, dict) and raw.keys() >= ENVELOPE_KEYS:
            names.append(path.name)
    return names


def _required_paths(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        if info.is_required():
            paths.append((*prefix, name))
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            paths.extend(_required_paths(info.annotation, (*prefix, name)))
    return paths


def _event_sample(event_type: str) -> dict[str, Any]:
    """The golden sample of a type; a missing one is reported once, by test_every_event_type_has_a_golden_sample."""
    if not (SAMPLES / event_sample_name(event_type)).is_file():
        pytest.skip(f"{event_type} has no golden sample yet (see test_every_event_type_has_a_golden_sample)")
    return load_sample(event_sample_name(event_type))


REQUIRED = [(event_type, path) for event_type, schema in sorted(EVENT_TYPES.items())
            for path in _required_paths(schema)]


# ------------------------------------------------------------------------------------------ (d) and (a)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_type_has_a_golden_sample(event_type: str) -> None:
    path = SAMPLES / event_sample_name(event_type)
    assert path.is_file(), f"add a golden sample {path.name} for {event_type} (a full envelope)"


@pytest.mark.parametrize("name", _envelope_samples())
def test_envelope_sample_is_named_by_a_declared_type(name: str) -> None:
    raw = load_sample(name)
    assert raw["type"] in EVENT_TYPES, f"{name} is a sample of {raw['type']}, which EVENT_TYPES does not declare"
    assert name == event_sample_name(raw["type"])
    assert raw["type"] == EVENT_TYPES[raw["type"]].TYPE


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_event_sample_round_trips(event_type: str) -> None:
    raw = _event_sample(event_type)
    envelope = Envelope.model_validate(raw)
    assert envelope.model_dump(mode="json") == raw
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope
    payload = EVENT_TYPES[event_type].model_validate(envelope.data)
    # Every field of the schema is in the sample and nothing else: renaming or removing one fails here.
    assert payload.model_dump(mode="json") == raw["data"]
    assert envelope.type == type(payload).TYPE


# ------------------------------------------------------------------------------------------ (c)


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_unknown_fields_are_ignored(event_type: str) -> None:
    raw = _event_sample(event_type)
    newer = with_unknown_fields(Envelope.model_validate(raw))
    assert newer.model_dump(mode="json") == raw | {"data": newer.data}
    assert "x_added_later" in newer.data
    payload = EVENT_TYPES[event_type].model_validate(newer.data)
    assert payload.model_dump(mode="json") == raw["data"]


@pytest.mark.parametrize(("event_type", "path"), REQUIRED, ids=[f"{t}:{'.'.join(p)}" for t, p in REQUIRED])
def test_missing_required_field_is_refused(event_type: str, path: tuple[str, ...]) -> None:
    data = copy.deepcopy(_event_sample(event_type)["data"])
    holder: dict[str, Any] = data
    for step in path[:-1]:
        holder = holder[step]
    del holder[path[-1]]
    with pytest.raises(ValidationError):
        EVENT_TYPES[event_type].model_validate(data)


@pytest.mark.parametrize("field", sorted(name for name, f in Envelope.model_fields.items() if f.is_required()))
def test_envelope_without_required_field_is_refused(field: str) -> None:
    raw = load_sample(event_sample_name(TransferRequested.TYPE))
    del raw[field]
    with pytest.raises(ValidationError):
        Envelope.model_validate(raw)


@pytest.mark.parametrize(("event_type", "field", "value"), [
    (TransferRequested.TYPE, "amount_fen", 0),
    (TransferCredit.TYPE, "amount_fen", -1),
    (TransferCreditResult.TYPE, "outcome", "MAYBE"),
    (TransferSettled.TYPE, "outcome", "REJECTED"),
])
def test_invalid_values_are_refused(event_type: str, field: str, value: Any) -> None:
    data = load_sample(event_sample_name(event_type))["data"] | {field: value}
    with pytest.raises(ValidationError):
        EVENT_TYPES[event_type].model_validate(data)


async def test_consumers_skip_unknown_event_types(fed: InProcessFederation) -> None:
    stranger = Envelope.model_validate(load_sample(event_sample_name(TransferCancel.TYPE)) | {
        "type": "wallet.something.new.v1"})
    async with UnitOfWork(fed.hub.db) as uow:
        await hub_messages.handle_batch(fed.hub, uow, [stranger])
        await uow.commit()
    async with UnitOfWork(fed.node(DESTINATION).db) as uow:
        await node_messages.handle_batch(fed.node(DESTINATION), uow, [stranger])
        await uow.commit()
    assert await fed.take_all() == []
