"""Kafka producer and consumer set-up with every reliability setting explicit, and the consumer loop:
poll a batch, apply it in ONE database transaction (with inbox dedupe), then commit offsets. Offsets are
committed only after the database commit, so nothing is acknowledged before it is durably stored.

Offsets are committed at most every `commit_interval_s` while messages keep coming, and at once when the
stream pauses or the loop stops: a commit per batch was a broker round trip per message at low batch sizes.
Offsets that lag behind only mean a restarted consumer reads again what it already applied, and the inbox
drops those.

A batch that keeps failing no longer freezes the partition (scale_out.md §1 "poison batch"): after
`max_attempts` tries with backoff the batch is applied one message per unit of work, each again with
`max_attempts` tries; a message that still fails is parked in the `dead_letters` table (shared/dead_letters.py)
with its error, in its own unit of work, and the loop goes on. Later messages of the same key are parked behind
it without running (their order matters: a credit and its cancel); other keys go on. Parked = durably stored,
so offsets are committed past it; an operator replays it later.

Each message is decoded and validated on its own before its batch runs (`decode`): one that no schema reads, or
whose payload fails the class its type names in the service's handler registry (shared/dispatch.py), is parked
at once, without retries (retrying cannot fix it), and blocks its key like any other dead letter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.contracts.envelope import Envelope
from shared.db import Database, UnitOfWork, run_retrying
from shared.dead_letters import Inbound, apply_inbound, error_text, inbox_seen, park_failed, remember_applied
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.kafka")

BatchHandler = Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]
# Why a decoded message cannot be applied (its payload fails the class its type names), or None: the service's
# registry (shared/dispatch.py Inbox.problem). Such a message is parked at once, without retries.
PayloadCheck = Callable[[Envelope], str | None]
MAX_RETRY_DELAY_S = 5.0


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
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        rebalance_timeout_ms=settings.kafka_rebalance_timeout_ms,
    )


async def filter_new(uow: UnitOfWork, envelopes: list[Envelope]) -> list[Envelope]:
    """Inbox dedupe: drop messages already applied (or repeated within the batch) and remember the rest,
    in the same transaction that applies them."""
    if not envelopes:
        return []
    seen = await inbox_seen(uow, list({env.id for env in envelopes}))
    fresh: list[Envelope] = []
    for env in envelopes:
        if env.id in seen:
            continue
        seen.add(env.id)
        fresh.append(env)
    await remember_applied(uow, fresh)
    return fresh


def decode(records: list[ConsumerRecord[bytes, bytes]], check: PayloadCheck | None = None) -> list[Inbound]:
    """Each record with its place and key (the key orders dead letters), decoded and validated on its own: one
    no schema reads keeps `envelope=None`, one whose payload fails its type's class (`check`) keeps its envelope;
    both carry `decode_error` and are parked by the loop rather than skipped or retried."""
    inbound: list[Inbound] = []
    for record in records:
        value = record.value or b""
        key = record.key.decode("utf-8", "backslashreplace") if record.key is not None else None
        try:
            envelope: Envelope | None = Envelope.from_bytes(value)
            problem = None
        except Exception as exc:
            envelope, problem = None, error_text(exc)
        if envelope is not None and check is not None:
            problem = check(envelope)
        inbound.append(Inbound(topic=record.topic, partition=record.partition, offset=record.offset, key=key,
                               value=value, envelope=envelope, decode_error=problem))
    return inbound


class ConsumerLoop:
    def __init__(self, db: Database, consumer: AIOKafkaConsumer, handler: BatchHandler, *, poll_timeout_ms: int,
                 max_records: int, commit_interval_s: float = 1.0, max_attempts: int = 3,
                 retry_delay_s: float = 0.2, check: PayloadCheck | None = None) -> None:
        self._db = db
        self._consumer = consumer
        self.handler = handler  # also what a replay of a dead letter runs (shared/dead_letters_api.py)
        self._check = check
        self._poll_timeout_ms = poll_timeout_ms
        self._max_records = max_records
        self._commit_interval_s = commit_interval_s
        self._max_attempts = max(1, max_attempts)
        self._retry_delay_s = retry_delay_s
        self._uncommitted = False  # applied in the database, offsets not yet told to Kafka
        self._last_commit_s = 0.0
        self._stopping = False
        self.applied_total = 0
        self.parked_total = 0  # messages this process parked as dead letters (exported on /metrics)
        self._next_offset: dict[TopicPartition, int] = {}  # per partition: the offset after the last message applied

    def stop(self) -> None:
        self._stopping = True

    def lag(self) -> int:
        """Messages on this replica's partitions not yet applied, by the brokers' high-water marks as last
        fetched (partitions this replica has not read from yet are not counted). Shown by /readyz."""
        behind = 0
        for partition in self._consumer.assignment():
            highwater = self._consumer.highwater(partition)
            applied = self._next_offset.get(partition)
            if highwater is not None and applied is not None:
                behind += max(0, highwater - applied)
        return behind

    async def run(self) -> None:
        try:
            while not self._stopping:
                # Pending offsets make the poll short, so that a pause in the stream commits them promptly.
                timeout_ms = min(self._poll_timeout_ms, 50) if self._uncommitted else self._poll_timeout_ms
                batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=self._max_records)
                records = [record for part in batches.values() for record in part]
                if records:
                    await self._apply_until_done(decode(records, self._check))
                    self._uncommitted = True
                    for partition, part in batches.items():
                        self._next_offset[partition] = part[-1].offset + 1
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

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(self._retry_delay_s * 2 ** (attempt - 1), MAX_RETRY_DELAY_S))

    async def _apply(self, items: list[Inbound]) -> None:
        async def attempt() -> int:
            async with UnitOfWork(self._db) as uow:
                parked = await apply_inbound(uow, items, self.handler)
                await uow.commit()
            return parked

        # Losing a race with a concurrent transaction (PostgreSQL) is no failure of the messages.
        parked = await run_retrying(attempt)
        self.parked_total += parked
        self.applied_total += len(items) - parked

    async def _apply_until_done(self, items: list[Inbound]) -> None:
        # The whole batch in one transaction first (the fast path). A failure may be the database (then the
        # retries outlast it) or one message (then only that one is parked, below): never skipped, since
        # skipping would lose money movements.
        if len(items) > 1:
            for attempt in range(1, self._max_attempts + 1):
                try:
                    await self._apply(items)
                    return
                except Exception:
                    log.exception("applying a batch of %d messages failed (try %d of %d)", len(items), attempt,
                                  self._max_attempts)
                    await self._backoff(attempt)
            log.error("the batch keeps failing; applying its %d messages one by one", len(items))
        for item in items:
            await self._apply_one(item)

    async def _apply_one(self, item: Inbound) -> None:
        error = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await self._apply([item])
                return
            except Exception as exc:
                log.warning("applying message %s failed (try %d of %d): %s", item.where, attempt,
                            self._max_attempts, type(exc).__name__)
                error = error_text(exc)
                if attempt < self._max_attempts:
                    await self._backoff(attempt)
        await self._park_until_done(item, error)

    async def _park_until_done(self, item: Inbound, error: str) -> None:
        # Storing the dead letter can only fail with the database: retried until it is stored, since the
        # offset must not move past a message that is neither applied nor parked.
        attempt = 0
        while True:
            attempt += 1
            try:
                async with UnitOfWork(self._db) as uow:
                    parked = await park_failed(uow, item, error, self._max_attempts)
                    await uow.commit()
                if parked is not None:
                    self.parked_total += 1
                return
            except Exception:
                log.exception("parking message %s failed; retrying", item.where)
                await self._backoff(attempt)
