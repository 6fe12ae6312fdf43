"""Dead letters (shared/dead_letters.py) and the consumer loop's parking (shared/kafka.py), on a real database
migrated by a real service's Alembic revisions: a SQLite file, and PostgreSQL when YIBAO_TEST_POSTGRES_URL is set.

The consumer loop is driven through a small stand-in for the AIOKafkaConsumer object (getmany / commit only):
the Kafka client is not what is under test, the loop's handling of a batch is. The handler is a test handler
that writes each message it applies into a scratch table (so "applied exactly once, in order" is read from the
database, where rolled-back attempts leave nothing) and fails on the messages the test names."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka.structs import ConsumerRecord, TopicPartition
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.province_node.bootstrap import MIGRATIONS
from shared import dead_letters
from shared.contracts.envelope import Envelope
from shared.db import Database, ReadView, UnitOfWork, open_database
from shared.kafka import ConsumerLoop, decode
from shared.settings import ServiceSettings
from shared.web import ApiError
from tests.support.inprocess import scratch_database
from tests.support.plans import generic_plan_scans

TOPIC = "yibao.province.640000.inbound.v1"
SCRATCH = sa.MetaData()
APPLIED = sa.Table("dl_test_applied", SCRATCH, sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
                   sa.Column("message_id", sa.String(64), nullable=False))


class StubConsumer:
    """getmany() hands out the queued batches one per call, then stops the loop; commit() is counted."""

    def __init__(self, batches: list[list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.batches = list(batches)
        self.commits = 0
        self.loop: ConsumerLoop | None = None

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[Any, Any]:
        if not self.batches:
            assert self.loop is not None
            self.loop.stop()
            return {}
        batch = self.batches.pop(0)
        return {TopicPartition(TOPIC, 0): batch}

    async def commit(self) -> None:
        self.commits += 1


class FlakyHandler:
    def __init__(self, failing: set[str]) -> None:
        self.failing = failing
        self.runs = 0

    async def __call__(self, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
        for env in envelopes:
            self.runs += 1
            await uow.execute(sa.insert(APPLIED), {"message_id": env.id})
            if env.id in self.failing:
                raise ValueError(f"cannot apply {env.id}")


_offsets = iter(range(1_000_000))


def record(message_id: str | None, key: str | None) -> ConsumerRecord[bytes, bytes]:
    """A record as aiokafka hands it over; message_id None gives bytes no schema reads."""
    if message_id is None:
        value = b"\xff not json"
    else:
        value = Envelope(type="test.Thing.v1", id=message_id, source="test", time="2025-01-15T02:00:00Z",
                         trace_id="t", data={"n": 1}).to_bytes()
    return ConsumerRecord(TOPIC, 0, next(_offsets), 0, 0, key.encode() if key is not None else None, value, None,
                          0, len(value), [])


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with scratch_database(request.param, tmp_path, "node_640000", MIGRATIONS, SCRATCH,
                                f"tdl{secrets.token_hex(3)}_") as database:
        yield database


async def consume(db: Database, handler: FlakyHandler, *batches: list[ConsumerRecord[bytes, bytes]]) -> StubConsumer:
    stub = StubConsumer(list(batches))
    loop = ConsumerLoop(db, stub, handler, poll_timeout_ms=1, max_records=500,
                        max_attempts=3, retry_delay_s=0.001)
    stub.loop = loop
    await loop.run()
    return stub


async def applied(db: Database) -> list[str]:
    async with ReadView(db) as view:
        return list((await view.execute(sa.select(APPLIED.c.message_id).order_by(APPLIED.c.seq))).scalars())


async def letters(db: Database) -> dict[str, Any]:
    return {item["message_id"]: item for item in await dead_letters.list_dead_letters(db)}


async def test_a_failing_message_is_parked_its_key_waits_other_keys_go_on_and_replay_applies_once(
        db: Database) -> None:
    handler = FlakyHandler(failing={"credit-a"})
    first = [record("credit-a", "A"), record("cancel-a", "A"), record("credit-b", "B"), record(None, "C")]
    stub = await consume(db, handler, first)

    assert await applied(db) == ["credit-b"]  # another key goes on
    parked = await letters(db)
    assert set(parked) == {"credit-a", "cancel-a", f"kafka:{TOPIC}:0:{first[3].offset}"}
    head, behind = parked["credit-a"], parked["cancel-a"]
    assert head["state"] == "PARKED" and head["blocked_by"] is None and head["attempts"] == 3
    assert "ValueError: cannot apply credit-a" in head["error"]
    assert (head["topic"], head["partition"], head["offset"], head["key"]) == (TOPIC, 0, first[0].offset, "A")
    # The cancel never ran: it waits behind its credit.
    assert behind["state"] == "PARKED" and behind["blocked_by"] == head["id"] and behind["attempts"] == 0
    assert parked[f"kafka:{TOPIC}:0:{first[3].offset}"]["error"].startswith("undecodable")
    assert stub.commits >= 1  # parked = durably stored: the offsets move on

    # While the head is parked, a later message of its key waits too (the batch path), other keys go on.
    await consume(db, handler, [record("later-a", "A"), record("other-d", "D")])
    assert await applied(db) == ["credit-b", "other-d"]
    assert (await letters(db))["later-a"]["blocked_by"] == head["id"]

    # Kafka redelivers everything (offsets lost): nothing is applied or parked twice.
    await consume(db, handler, first, [record("later-a", "A"), record("other-d", "D")])
    assert await applied(db) == ["credit-b", "other-d"]
    assert len(await letters(db)) == 4

    # One behind the head cannot be replayed on its own.
    with pytest.raises(ApiError) as blocked:
        await dead_letters.replay(db, handler, behind["id"])
    assert (blocked.value.status, blocked.value.code) == (409, "DEAD_LETTER_BLOCKED")

    # Still failing: it stays parked with the new error, the rest behind it.
    again = await dead_letters.replay(db, handler, head["id"])
    assert again["state"] == "PARKED" and again["replayed"] == []
    assert again["still_parked"] == [head["id"], behind["id"], (await letters(db))["later-a"]["id"]]
    assert (await letters(db))["credit-a"]["attempts"] == 4
    assert await applied(db) == ["credit-b", "other-d"]

    # Fixed: the head and those behind it are applied in order, once.
    handler.failing.clear()
    done = await dead_letters.replay(db, handler, head["id"])
    later_id = (await letters(db))["later-a"]["id"]
    assert done == {"id": head["id"], "state": "REPLAYED", "replayed": [head["id"], behind["id"], later_id],
                    "still_parked": []}
    assert await applied(db) == ["credit-b", "other-d", "credit-a", "cancel-a", "later-a"]
    assert all(item["state"] == "REPLAYED" for item in (await letters(db)).values() if item["key"] == "A")

    with pytest.raises(ApiError) as twice:
        await dead_letters.replay(db, handler, head["id"])
    assert (twice.value.status, twice.value.code) == (409, "DEAD_LETTER_ALREADY_REPLAYED")
    with pytest.raises(ApiError) as unknown:
        await dead_letters.replay(db, handler, 999_999)
    assert (unknown.value.status, unknown.value.code) == (404, "DEAD_LETTER_NOT_FOUND")

    # The key is free again; a redelivery of what was replayed is dropped by the inbox.
    await consume(db, handler, [record("after-a", "A"), *first[:2]])
    assert await applied(db) == ["credit-b", "other-d", "credit-a", "cancel-a", "later-a", "after-a"]

    # The undecodable one still cannot be read: a replay leaves it parked.
    undecodable = (await letters(db))[f"kafka:{TOPIC}:0:{first[3].offset}"]
    still = await dead_letters.replay(db, handler, undecodable["id"])
    assert still["state"] == "PARKED" and still["still_parked"] == [undecodable["id"]]


async def test_a_message_applied_meanwhile_is_marked_replayed_without_running_again(db: Database) -> None:
    handler = FlakyHandler(failing={"m1"})
    await consume(db, handler, [record("m1", None)])
    head = (await letters(db))["m1"]
    assert head["state"] == "PARKED" and head["key"] is None
    async with UnitOfWork(db) as uow:  # some other path applied it (it is in the inbox)
        await dead_letters.remember_applied(uow, [Envelope.from_bytes(record("m1", None).value or b"")])
        await uow.commit()
    runs = handler.runs
    handler.failing.clear()
    answer = await dead_letters.replay(db, handler, head["id"])
    assert answer["state"] == "REPLAYED" and handler.runs == runs
    assert await applied(db) == []


@pytest.mark.parametrize("service", ["province_node", "national_hub", "pharmacy_gateway"])
async def test_each_services_migration_creates_the_table_the_model_describes(service: str, tmp_path: Path) -> None:
    migrations = Path(__file__).parents[2] / "services" / service / "adapters" / "migrations"
    database = await open_database(ServiceSettings(home=tmp_path, database_url=""), service, migrations)
    metadata = sa.MetaData()
    dead_letters.DEAD_LETTERS.to_metadata(metadata)
    assert database.sync_engine is not None
    with database.sync_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, metadata) if "dead_letters" in repr(d)]
    await database.dispose()
    assert differences == []


async def test_a_batch_is_checked_with_one_read_and_its_inbox_rows_go_with_the_handlers(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 9 (round trips are the cost): which of a batch's messages were applied, and which dead letters
    they wait behind, is one statement; the inbox rows are deferred (UnitOfWork.defer), so the handler's
    transaction pays for the dedupe with one round trip."""
    handler = FlakyHandler(failing={"credit-a"})
    await consume(db, handler, [record("credit-a", "A")])  # parked: the head of key A
    statements: list[str] = []
    execute = UnitOfWork.execute

    async def counting(self: UnitOfWork, statement: Any, params: Any = None) -> Any:
        statements.append(type(getattr(statement, "statement", statement)).__name__)
        return await execute(self, statement, params)

    async def handle(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
        statements.append("handler")

    monkeypatch.setattr(UnitOfWork, "execute", counting)
    async with UnitOfWork(db) as uow:
        parked = await dead_letters.apply_inbound(uow, dead_letters_inbound(
            [record("cancel-a", "A"), record("credit-b", "B"), record("credit-c", None)]), handle)
        await uow.commit()
    # One read, the park of cancel-a behind its credit, then the handler with the two others (their inbox
    # rows are written at the commit, with whatever the handler deferred).
    assert statements[:3] == ["Select", "Insert", "handler"] and parked == 1
    assert (await letters(db))["cancel-a"]["blocked_by"] == (await letters(db))["credit-a"]["id"]
    statements.clear()
    async with UnitOfWork(db) as uow:  # both are in the inbox now: a redelivery runs nothing
        assert await dead_letters.apply_inbound(uow, dead_letters_inbound(
            [record("credit-b", "B"), record("credit-c", None), record("cancel-a", "A")]), handle) == 0
        await uow.commit()
    assert statements == ["Select"]


async def test_a_batch_of_two_topics_waits_behind_each_topics_own_dead_letters(db: Database) -> None:
    other_topic = "yibao.province.640000.other.v1"
    handler = FlakyHandler(failing={"x-1"})
    await consume(db, handler, [record("x-1", "A")])  # key A parked on TOPIC only
    items = [*dead_letters_inbound([record("t-2", "A")]),
             dead_letters.Inbound(topic=other_topic, partition=0, offset=1, key="A", value=b"",
                                  envelope=Envelope.from_bytes(record("o-1", "A").value or b""))]
    async with UnitOfWork(db) as uow:
        assert await dead_letters.apply_inbound(uow, items, handler) == 1
        await uow.commit()
    assert await applied(db) == ["o-1"]  # key A of the other topic waits behind nothing
    assert (await letters(db))["t-2"]["blocked_by"] == (await letters(db))["x-1"]["id"]


def dead_letters_inbound(records: list[ConsumerRecord[bytes, bytes]]) -> list[dead_letters.Inbound]:
    return decode(records)


async def test_a_new_inbox_is_read_by_its_key(db: Database) -> None:
    """PostgreSQL caches one plan (a generic one) for a statement a consumer runs for every batch, and may make
    it while the inbox is still empty, as on a fresh instance: then it must still read the inbox by its key. With
    `message_id = ANY(ids)` it was a sequential scan of the whole inbox for every batch until autovacuum's next
    ANALYZE (issue 9)."""
    if db.inline:
        pytest.skip("SQLite plans each statement as it runs")
    scans = await generic_plan_scans(db, dead_letters._BATCH_FACTS_POSTGRESQL.statement,
                                     {"ids": ["m-1", "m-2"], "topic": TOPIC, "keys": ["k-1"]}, "inbox")
    assert scans and "Seq Scan" not in scans, scans
