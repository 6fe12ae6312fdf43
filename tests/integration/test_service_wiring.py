"""One wiring path (shared/runtime.py service_lifespan) and inbound messages through the handler registry
(shared/dispatch.py), on a node's real database, context and EVENT_HANDLERS.

Kafka is replaced by small stand-ins for the aiokafka producer and consumer objects (what the runtime calls on
them): the Kafka client is not under test, the order of the wiring and the consumer loop's handling are."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord, TopicPartition

import shared.runtime
from services.province_node import bootstrap as node_bootstrap
from services.province_node.config import NodeSettings
from services.province_node.service_layer import messages as node_messages
from services.province_node.service_layer.context import NodeContext
from shared import dead_letters
from shared.clock import FixedClock
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.events import TransferCancel, TransferCredit
from shared.db import Database, ReadView, open_database
from shared.dispatch import Inbox
from shared.kafka import ConsumerLoop
from shared.messaging_tables import InboxMessage
from shared.runtime import Runtime
from shared.tables import table

ADMDVS = "640000"
TOPIC = topics.province_inbound(ADMDVS)
START = datetime(2025, 1, 15, 2, 0, tzinfo=UTC)
SETTINGS: dict[str, Any] = {
    "province_admdvs": ADMDVS, "database_url": "", "id_hash_key": "wiring-test-id-hash-key",
    "token_key": "wiring-test-token-key", "internal_token": "wiring-test-internal-token",
    "operator_token": "wiring-test-operator-token", "hub_url": "http://hub.wiring-test",
    "password_hash_iterations": 1000,
}
_INBOX = table(InboxMessage)
_offsets = iter(range(1_000_000))


def record(message_type: str, message_id: str, key: str, data: dict[str, Any]) -> ConsumerRecord[bytes, bytes]:
    value = Envelope(type=message_type, id=message_id, source="hub", time=START, trace_id="t", data=data).to_bytes()
    return ConsumerRecord(TOPIC, 0, next(_offsets), 0, 0, key.encode(), value, None, 0, len(value), [])


GIVER_PSN_NO = "6400000123456789"
CREDIT = {"transfer_id": "T-bad", "binding_id": "B8e2d4c6a1f3b5d7e9c0a2b4d6f8e1c3a", "giver_psn_no": GIVER_PSN_NO,
          "giver_admdvs": "620000", "receiver_psn_no": "6400000987654321", "receiver_admdvs": ADMDVS,
          "amount_fen": 50000, "accepted_at": "2025-01-15T02:00:00.125000Z",
          "credit_by": "2025-01-15T02:01:00.125000Z"}


def bad_credit(message_id: str = "credit-bad") -> ConsumerRecord[bytes, bytes]:
    """A known type whose payload fails its class: an amount that is no number (a producer's bug)."""
    return record(TransferCredit.TYPE, message_id, "T-bad", CREDIT | {"amount_fen": "lots"})


def cancel_of_bad_credit() -> ConsumerRecord[bytes, bytes]:
    return record(TransferCancel.TYPE, "cancel-bad", "T-bad", {"transfer_id": "T-bad", "reason": "TIMEOUT"})


def marker(message_id: str, key: str = "K-other") -> ConsumerRecord[bytes, bytes]:
    """A message of a type the node does not act on: applied (remembered in the inbox) and otherwise skipped."""
    return record("wallet.test-marker.v1", message_id, key, {"n": 1})


class StubConsumer:
    """What the runtime and the consumer loop call on an AIOKafkaConsumer: batches queued by the test, handed
    out one per poll; an empty poll waits its timeout."""

    def __init__(self, events: list[str] | None = None) -> None:
        self.queue: list[list[ConsumerRecord[bytes, bytes]]] = []
        self.commits = 0
        self.events = events if events is not None else []
        self.loop: ConsumerLoop | None = None
        self.stop_when_drained = False

    async def start(self) -> None:
        self.events.append("consumer started")

    async def stop(self) -> None:
        self.events.append("consumer stopped")

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        if not self.queue:
            if self.stop_when_drained and self.loop is not None:
                self.loop.stop()
                return {}
            await asyncio.sleep(min(timeout_ms, 20) / 1000)
            return {}
        return {TopicPartition(TOPIC, 0): self.queue.pop(0)}

    async def commit(self) -> None:
        self.commits += 1

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC, 0)}

    def highwater(self, _partition: TopicPartition) -> int | None:
        return None


class StubProducer:
    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def start(self) -> None:
        self.events.append("producer started")

    async def stop(self) -> None:
        self.events.append("producer stopped")

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def inbox_ids(db: Database) -> set[str]:
    async with ReadView(db) as view:
        return set((await view.execute(sa.select(_INBOX.c.message_id))).scalars())


async def letters(db: Database) -> dict[str, Any]:
    return {item["message_id"]: item for item in await dead_letters.list_dead_letters(db)}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeContext]:
    """The node's context as its lifespan builds it (`node_context`), over its migrated database."""
    settings = NodeSettings(home=tmp_path, **SETTINGS)
    db = await open_database(settings, settings.db_instance, node_bootstrap.MIGRATIONS)
    try:
        async with node_bootstrap.node_context(settings, FixedClock(START), db) as ctx:
            yield ctx
    finally:
        await db.dispose()


async def test_a_known_type_with_a_bad_payload_is_parked_at_once_and_the_rest_goes_on(node: NodeContext) -> None:
    stub = StubConsumer()
    stub.queue = [[bad_credit(), cancel_of_bad_credit(), marker("other-1")]]
    stub.stop_when_drained = True
    inbox = Inbox(node_messages.EVENT_HANDLERS, node)
    # Retries would wait a minute: a payload that fails its class is not retried, so this ends at once.
    loop = ConsumerLoop(node.db, stub, inbox, check=inbox.problem,
                        poll_timeout_ms=1, max_records=500, max_attempts=3, retry_delay_s=60.0)
    stub.loop = loop
    await asyncio.wait_for(loop.run(), timeout=10.0)

    parked = await letters(node.db)
    assert set(parked) == {"credit-bad", "cancel-bad"}
    head, behind = parked["credit-bad"], parked["cancel-bad"]
    assert head["state"] == "PARKED" and head["attempts"] == 1 and head["message_type"] == TransferCredit.TYPE
    assert head["error"].startswith(f"undecodable: invalid {TransferCredit.TYPE} payload: amount_fen: ")
    assert "lots" not in head["error"] and GIVER_PSN_NO not in head["error"]  # fields named, values never
    assert behind["blocked_by"] == head["id"] and behind["attempts"] == 0  # its cancel waits behind it
    assert await inbox_ids(node.db) == {"other-1"}  # another key went on
    assert (loop.parked_total, loop.applied_total, stub.commits) == (2, 1, 1)

    # A replay holds it to the same schema: it fails again, named the same way, and stays parked.
    replayed = await dead_letters.replay(node.db, inbox, head["id"])
    assert replayed["state"] == "PARKED" and replayed["replayed"] == []
    assert replayed["error"].startswith(f"InvalidPayload: invalid {TransferCredit.TYPE} payload: amount_fen: ")


@contextlib.contextmanager
def recorded_wiring(monkeypatch: pytest.MonkeyPatch, events: list[str]) -> Iterator[StubConsumer]:
    """The node's real bootstrap with Kafka stood in for, each step of the wiring recorded in `events`."""
    consumer = StubConsumer(events)
    real_open = open_database  # what shared.runtime opens with
    real_context = node_bootstrap.node_context

    async def recorded_open(*args: Any, **kwargs: Any) -> Database:
        db = await real_open(*args, **kwargs)
        events.append("database opened")
        real_dispose = db.dispose

        async def dispose() -> None:
            events.append("database closed")
            await real_dispose()

        monkeypatch.setattr(db, "dispose", dispose)
        return db

    @contextlib.asynccontextmanager
    async def node_context(*args: Any, **kwargs: Any) -> AsyncIterator[NodeContext]:
        async with real_context(*args, **kwargs) as ctx:
            events.append("context built")
            yield ctx
            events.append("context closing")

    real_every = Runtime.every

    def every(self: Runtime, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        events.append(f"job {name}")
        real_every(self, name, interval_s, work)

    def make_consumer(*_args: Any, **_kwargs: Any) -> StubConsumer:
        return consumer

    monkeypatch.setattr(shared.runtime, "open_database", recorded_open)
    monkeypatch.setattr(shared.runtime, "make_producer", lambda *_a, **_k: StubProducer(events))
    monkeypatch.setattr(shared.runtime, "make_consumer", make_consumer)
    monkeypatch.setattr(node_bootstrap, "node_context", node_context)
    monkeypatch.setattr(Runtime, "every", every)
    yield consumer


async def test_database_then_context_then_consumer_and_jobs_torn_down_in_reverse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    settings = NodeSettings(home=tmp_path, **SETTINGS)
    with recorded_wiring(monkeypatch, events) as consumer:
        app = node_bootstrap.bootstrap(settings, FixedClock(START))
        async with app.router.lifespan_context(app):
            ctx = app.state.ctx
            assert isinstance(ctx, NodeContext) and ctx.settings is settings
            started = list(events)
            # The consumer applies through the node's registry over the context the lifespan built.
            consumer.queue.append([bad_credit("credit-bad-2"), marker("other-2")])
            await until(lambda: _applied(ctx.db, "other-2"))
            assert (await letters(ctx.db))["credit-bad-2"]["attempts"] == 1
            events.append("serving ended")
    assert started == ["database opened", "producer started", "context built", "consumer started",
                       "job inbox-retention", "job audit-checkpoint", "job quota-year-end",
                       "job premium-reservations", "job system-balances", "job transfer-acceptance"]
    assert events[len(started):] == ["serving ended", "consumer stopped", "context closing", "producer stopped",
                                     "database closed"]


async def _applied(db: Database, message_id: str) -> bool:
    return message_id in await inbox_ids(db)
