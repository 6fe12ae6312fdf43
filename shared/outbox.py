"""Transactional outbox and its relay.

Use cases call `add_to_outbox` inside their unit of work; the relay publishes committed rows in order through an
idempotent producer (acks=all) and deletes them only after Kafka acknowledged them. The relay wakes right after
a commit (no polling delay on the hot path) and also polls as a safety net.

On SQLite (one process per instance) published rows are deleted lazily: the relay remembers in memory how far
Kafka has acknowledged and reads past that, and deletes at most every `cleanup_interval_s` (or once
`batch_size` rows have piled up); a delete per publish was a second write transaction for every message, on the
hot path's write lock. The newest published row is kept: SQLite numbers a new row max(seq) + 1, so an emptied
table would hand out numbers below the mark. Rows follow commit order there because every write holds the one
write lock (shared/db/).

On PostgreSQL, replicas share the table and `seq` is handed out at INSERT, not at commit: a row with a lower
seq can become visible after a higher one, so a high-water mark would skip it for good. There one replica at a time
relays: the one holding the instance's relay lock, a session-level advisory lock taken on the relay's own connection
(which then LISTENs, below) and held while that connection lives, so a leader that dies or loses its connection
hands the turn on at once. Per-key order is kept: writers of one key lock its entity row, so their rows commit
in seq order. A leader's round is two statements in autocommit: (1) read the oldest rows still in the table,
with no mark, (2) after Kafka acknowledged them, delete exactly those seqs. (Each round was one transaction
that took a transaction-scoped lock: BEGIN, the lock, the read, the delete, COMMIT, five round trips on every
hop of every transfer, issue 9.) The others try for the lock at each poll. A replica that found another
leading does not ask again before its next poll: until then its commits only tell the leader (one NOTIFY
outside any transaction; asking for the lock on every commit cost a BEGIN, the lock's try and a ROLLBACK each,
a fifth of the statements of a transfer with 2 replicas, issue 9).

Two relays can publish the same rows only if a leader's lock connection breaks while it is in a round: the
round's rows then go out twice, each time in seq order, which consumers dedupe (by message id) without
changing the order in which they first see a key's messages.

A crash before the delete republishes those rows: consumers dedupe by message id, so that is harmless."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from sqlalchemy.dialects import postgresql

from shared.contracts.envelope import Envelope, new_envelope
from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.messaging_tables import OutboxMessage
from shared.tables import table

log = logging.getLogger("yibao.outbox")
_OUTBOX = table(OutboxMessage)
# Built once: the relay and every use case run these, and their compiled forms are reused.
_NEW_MESSAGE = Prepared(sa.insert(_OUTBOX))
_PENDING = (sa.select(_OUTBOX.c.seq, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.payload)
            .where(_OUTBOX.c.seq > sa.bindparam("after_seq", type_=sa.BigInteger))
            .order_by(_OUTBOX.c.seq).limit(sa.bindparam("batch", type_=sa.Integer)))
_PUBLISHED = sa.delete(_OUTBOX).where(_OUTBOX.c.seq < sa.bindparam("last_seq", type_=sa.BigInteger))
# PostgreSQL's relay round (Prepared: run straight on the driver). The seqs it sent are deleted by an array
# parameter: an expanding IN list was compiled again for every round (about 6% of a gateway's CPU under cProfile).
_OLDEST = Prepared(sa.select(_OUTBOX.c.seq, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.payload)
                   .order_by(_OUTBOX.c.seq).limit(sa.bindparam("batch", type_=sa.Integer)))
_PUBLISHED_EXACTLY = Prepared(sa.delete(_OUTBOX).where(_OUTBOX.c.seq == sa.any_(
    sa.bindparam("seqs", type_=postgresql.ARRAY(sa.BigInteger)))))
_NOTIFY = sa.text("SELECT pg_notify(:channel, '')")
# Run on the listening connection's driver, outside any transaction: a session-level lock, held until it closes.
_TRY_LEAD = "SELECT pg_try_advisory_lock(hashtext($1))"
RELAY_JOB = "outbox-relay"


async def add_to_outbox(uow: UnitOfWork, topic: str, key: str, envelope: Envelope) -> None:
    """Written as the unit of work commits, with its other messages in one statement (`UnitOfWork.defer`: a
    hub batch of N transfers sends N messages in one round trip); in the order they were added."""
    uow.defer(_NEW_MESSAGE, {"message_id": envelope.id, "topic": topic, "key": key,
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
        # PostgreSQL: a commit wakes its own replica's relay; when another replica leads, this one tells it
        # with NOTIFY on the instance's channel, which the leader LISTENs to (the poll is the safety net).
        self._channel = f"outbox_{db.schema}"
        self._listener: Any = None  # the SQLAlchemy connection that holds the relay lock, and LISTENs, once led
        self._listener_driver: Any = None  # its asyncpg connection
        self._leading = False  # PostgreSQL: this relay holds the instance's relay lock on `_listener`
        self._cleanup_interval_s = cleanup_interval_s
        self._published_seq = 0  # every row up to here is acknowledged by Kafka
        self._deleted_seq = 0  # ... and every row below here is gone from the table
        self._last_cleanup_s = 0.0
        self._wakeup = asyncio.Event()
        self._stopping = False
        self.published_total = 0
        self._follower_until_s = 0.0  # PostgreSQL: another replica leads; ask again from then on
        db.after_commit_hooks.append(self._wakeup.set)

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def _connect(self) -> None:
        """PostgreSQL: the connection on which this relay tries for the lock, and holds it and LISTENs once it
        leads. Re-established after a failure."""
        if self._db.inline or self._listener is not None:
            return
        assert self._db.engine is not None
        connection = await self._db.engine.connect()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        self._listener = connection
        self._listener_driver = driver

    def _notified(self, *_: Any) -> None:
        """Another replica committed outbox rows: this one, the leader, relays them."""
        self._wakeup.set()

    async def _close_listener(self) -> None:
        """Closes the connection itself rather than giving it back to the pool, where it would keep the LISTEN
        and the relay lock (so no replica could lead again) or be found dead by the next to take it."""
        self._leading = False
        if self._listener is not None:
            listener, self._listener, self._listener_driver = self._listener, None, None
            with contextlib.suppress(Exception):
                await listener.invalidate()
            with contextlib.suppress(Exception):
                await listener.close()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self._close_listener()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._connect()
                sent = await self.publish_pending()
                await self._clean_up(force=sent == 0)
            except Exception:
                log.exception("outbox relay failed; retrying")
                await self._close_listener()
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
        if not self._db.inline:
            return await self._publish_as_leader()
        async with ReadView(self._db) as view:
            rows = (await view.execute(_PENDING, {"after_seq": self._published_seq,
                                                   "batch": self._batch_size})).all()
        if not rows:
            return 0
        await self._send(rows)
        self._published_seq = rows[-1].seq
        self.published_total += len(rows)
        return len(rows)

    async def _publish_as_leader(self) -> int:
        """PostgreSQL: one round as the instance's relay, or nothing when another replica is it."""
        if self._listener_driver is not None and self._listener_driver.is_closed():
            await self._close_listener()  # the lock went with the connection: another replica may lead now
        if not self._leading and time.monotonic() >= self._follower_until_s:
            self._leading = await self._try_to_lead()
            if not self._leading:
                self._follower_until_s = time.monotonic() + self._poll_interval_s
        if not self._leading:
            # Another replica relays; it may be waiting for its poll: tell it rows are there, outside any
            # transaction (a read view runs its statement in autocommit: one round trip).
            async with ReadView(self._db) as view:
                await view.execute(_NOTIFY, {"channel": self._channel})
            return 0
        rows = (await self._db.execute_alone(_OLDEST, {"batch": self._batch_size})).all()
        if not rows:
            return 0
        await self._send(rows)
        await self._db.execute_alone(_PUBLISHED_EXACTLY, {"seqs": [row.seq for row in rows]})
        self.published_total += len(rows)
        return len(rows)

    async def _try_to_lead(self) -> bool:
        """Take the instance's relay lock if nobody holds it, on the relay's own connection: held until that
        connection closes (the process dies, or `_close_listener`). Only the leader LISTENs: PostgreSQL signals
        every backend that LISTENs in the database at each NOTIFY, whatever its channel, and each wakes to read
        the notification queue (measured here: 11 µs of PostgreSQL's CPU per listening backend per NOTIFY). With
        every replica of every service listening, each follower's commit woke them all, for nothing but the one
        leader of its service (issue 9)."""
        await self._connect()
        if not await self._listener_driver.fetchval(_TRY_LEAD, f"{self._db.schema}.{RELAY_JOB}"):
            return False
        await self._listener_driver.add_listener(self._channel, self._notified)
        return True

    async def _send(self, rows: list[Any]) -> None:
        # send() only enqueues; awaiting the futures waits for acks=all from the broker.
        futures = [
            await self._producer.send(row.topic, value=bytes(row.payload), key=row.key.encode()) for row in rows
        ]
        await asyncio.gather(*futures)

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
