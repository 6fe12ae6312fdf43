"""Transactional outbox and its relay.

Use cases call `add_to_outbox` inside their unit of work; the relay publishes committed rows in order through an
idempotent producer (acks=all) and deletes them only after Kafka acknowledged them. The relay wakes right after
a commit (no polling delay on the hot path) and also polls as a safety net.

Published rows are deleted lazily: the relay remembers in memory how far Kafka has acknowledged and reads past
that, and deletes at most every `cleanup_interval_s` (or once `batch_size` rows have piled up); a delete per
publish was a second write transaction for every message, on the hot path's write lock. The newest published
row is kept: SQLite numbers a new row max(seq) + 1, so an emptied table would hand out numbers below the mark.
Rows follow commit order because every write of a service instance holds its one write lock (shared/db.py).
A crash before the delete republishes those rows: consumers dedupe by message id, so that is harmless."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.contracts.envelope import Envelope, new_envelope
from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.messaging_tables import OutboxMessage

log = logging.getLogger("yibao.outbox")
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
# Built once: the relay and every use case run these, and their compiled forms are reused.
_NEW_MESSAGE = Prepared(sa.insert(_OUTBOX))
_PENDING = (sa.select(_OUTBOX.c.seq, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.payload)
            .where(_OUTBOX.c.seq > sa.bindparam("after_seq", type_=sa.Integer))
            .order_by(_OUTBOX.c.seq).limit(sa.bindparam("batch", type_=sa.Integer)))
_PUBLISHED = sa.delete(_OUTBOX).where(_OUTBOX.c.seq < sa.bindparam("last_seq", type_=sa.Integer))


async def add_to_outbox(uow: UnitOfWork, topic: str, key: str, envelope: Envelope) -> None:
    await uow.execute(_NEW_MESSAGE, {"message_id": envelope.id, "topic": topic, "key": key,
                                     "payload": envelope.to_bytes(), "created_at": envelope.time})
    uow.wrote_outbox = True


async def emit(uow: UnitOfWork, topic: str, key: str, message: BaseModel, *, source: str, trace_id: str,
               message_id: str | None = None) -> Envelope:
    envelope = new_envelope(message, source=source, trace_id=trace_id, message_id=message_id)
    await add_to_outbox(uow, topic, key, envelope)
    return envelope


class OutboxRelay:
    def __init__(self, db: Database, producer: AIOKafkaProducer, *, batch_size: int, poll_interval_s: float,
                 cleanup_interval_s: float = 1.0, linger_s: float = 0.0) -> None:
        self._db = db
        self._linger_s = linger_s
        self._producer = producer
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._cleanup_interval_s = cleanup_interval_s
        self._published_seq = 0  # every row up to here is acknowledged by Kafka
        self._deleted_seq = 0  # ... and every row below here is gone from the table
        self._last_cleanup_s = 0.0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.published_total = 0
        db.after_commit_hooks.append(self._wakeup.set)

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                sent = await self.publish_pending()
                await self._clean_up(force=sent == 0)
            except Exception:
                log.exception("outbox relay failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if sent >= self._batch_size:
                continue  # more waiting: no sleep
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._poll_interval_s)
            if self._linger_s and not self._stopping:
                await asyncio.sleep(self._linger_s)
            self._wakeup.clear()

    async def publish_pending(self) -> int:
        async with ReadView(self._db) as view:
            rows = (await view.execute(_PENDING, {"after_seq": self._published_seq,
                                                   "batch": self._batch_size})).all()
        if not rows:
            return 0
        # send() only enqueues; awaiting the futures waits for acks=all from the broker.
        futures = [
            await self._producer.send(row.topic, value=bytes(row.payload), key=row.key.encode()) for row in rows
        ]
        await asyncio.gather(*futures)
        self._published_seq = rows[-1].seq
        self.published_total += len(rows)
        return len(rows)

    async def _clean_up(self, *, force: bool) -> None:
        """Delete what Kafka has acknowledged: when idle, or every `cleanup_interval_s`, or when rows pile up."""
        if self._published_seq <= self._deleted_seq:
            return
        now_s = time.monotonic()
        due = (now_s - self._last_cleanup_s >= self._cleanup_interval_s
               or self._published_seq - self._deleted_seq >= self._batch_size)
        if not (force or due):
            return
        published_seq = self._published_seq
        async with UnitOfWork(self._db) as uow:
            await uow.execute(_PUBLISHED, {"last_seq": published_seq})
            await uow.commit()
        self._deleted_seq, self._last_cleanup_s = published_seq, now_s
