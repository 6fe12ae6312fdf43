"""Kafka producer and consumer set-up with every reliability setting explicit, and the consumer loop:
poll a batch, apply it in ONE database transaction (with inbox dedupe), then commit offsets. Offsets are
committed only after the database commit, so nothing is acknowledged before it is durably stored.

Offsets are committed at most every `commit_interval_s` while messages keep coming, and at once when the
stream pauses or the loop stops: a commit per batch was a broker round trip per message at low batch sizes.
Offsets that lag behind only mean a restarted consumer reads again what it already applied, and the inbox
drops those."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from shared.contracts.envelope import Envelope
from shared.db import Database, Prepared, PreparedIn, UnitOfWork
from shared.messaging_tables import InboxMessage
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.kafka")
_INBOX = InboxMessage.__table__  # type: ignore[attr-defined]
_SEEN = PreparedIn(lambda ids: sa.select(_INBOX.c.message_id).where(_INBOX.c.message_id.in_(ids)))
_NEW_INBOX = Prepared(sa.insert(_INBOX))

BatchHandler = Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]


def make_producer(settings: ServiceSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        max_batch_size=256 * 1024,
    )


def make_consumer(settings: ServiceSettings, topic: str, group_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=settings.consumer_max_records,
        session_timeout_ms=10000,
        heartbeat_interval_ms=1000,
    )


async def filter_new(uow: UnitOfWork, envelopes: list[Envelope]) -> list[Envelope]:
    """Inbox dedupe: drop messages already applied (or repeated within the batch) and remember the rest,
    in the same transaction that applies them."""
    if not envelopes:
        return []
    ids = list({env.id for env in envelopes})
    seen = {row.message_id for row in await uow.execute(*_SEEN.bind(ids))}
    fresh: list[Envelope] = []
    for env in envelopes:
        if env.id in seen:
            continue
        seen.add(env.id)
        fresh.append(env)
    if fresh:
        now = datetime.now(UTC)
        await uow.execute(_NEW_INBOX, [{"message_id": e.id, "message_type": e.type, "received_at": now}
                                       for e in fresh])
    return fresh


def decode(records: list[ConsumerRecord[bytes, bytes]]) -> list[Envelope]:
    envelopes: list[Envelope] = []
    for record in records:
        try:
            envelopes.append(Envelope.from_bytes(record.value or b""))
        except Exception:
            # A message no schema can read would block the partition forever; it is logged and skipped.
            log.error("undecodable message at %s[%s]@%s skipped", record.topic, record.partition, record.offset)
    return envelopes


class ConsumerLoop:
    def __init__(self, db: Database, consumer: AIOKafkaConsumer, handler: BatchHandler, *, poll_timeout_ms: int,
                 max_records: int, commit_interval_s: float = 1.0) -> None:
        self._db = db
        self._consumer = consumer
        self._handler = handler
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self._commit_interval_s = commit_interval_s
        self._uncommitted = False  # applied in the database, offsets not yet told to Kafka
        self._last_commit_s = 0.0
        self._stopping = False
        self.applied_total = 0

    def stop(self) -> None:
        self._stopping = True

    async def run(self) -> None:
        try:
            while not self._stopping:
                # Pending offsets make the poll short, so that a pause in the stream commits them promptly.
                timeout_ms = min(self._poll_timeout_ms, 50) if self._uncommitted else self._poll_timeout_ms
                batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
                records = [record for part in batches.values() for record in part]
                if records:
                    await self._apply_until_done(decode(records))
                    self._uncommitted = True
                if self._uncommitted and (not records
                                          or time.monotonic() - self._last_commit_s >= self._commit_interval_s):
                    await self._commit_offsets()
        finally:
            if self._uncommitted:
                await self._commit_offsets()

    async def _commit_offsets(self) -> None:
        try:
            await self._consumer.commit()
        except Exception:
            # A rebalance took the partitions away: their next owner reads again from the last committed
            # offsets, and the inbox drops what was applied here already.
            log.warning("offset commit failed; the messages will be read again and deduplicated", exc_info=True)
        self._uncommitted = False
        self._last_commit_s = time.monotonic()

    async def _apply_until_done(self, envelopes: list[Envelope]) -> None:
        # A failure here is the database or a bug, never the message's fault (handlers turn bad messages into
        # rejections), so the batch is retried rather than skipped: skipping would lose money movements.
        delay_s = 0.2
        while True:
            try:
                async with UnitOfWork(self._db) as uow:
                    fresh = await filter_new(uow, envelopes)
                    if fresh:
                        await self._handler(uow, fresh)
                    await uow.commit()
                self.applied_total += len(envelopes)
                return
            except Exception:
                log.exception("applying a batch of %d messages failed; retrying", len(envelopes))
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)
