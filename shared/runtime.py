"""The moving parts every service runs the same way: its database (migrated to head before anything is
served), an idempotent producer feeding the outbox relay, and a consumer loop over its inbound topic.
Services' bootstrap functions call `start_runtime` / `stop_runtime` from their FastAPI lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import audit
from shared.db import Database, open_database
from shared.kafka import BatchHandler, ConsumerLoop, make_consumer, make_producer
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.runtime")

KAFKA_START_TIMEOUT_S = 60.0


@dataclass
class Runtime:
    db: Database
    producer: AIOKafkaProducer
    relay: OutboxRelay
    consumer: AIOKafkaConsumer | None = None
    consumer_loop: ConsumerLoop | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    consumer_joined: bool = False

    async def check_database(self) -> None:
        await self.db.ping()

    async def check_kafka(self) -> None:
        if self.producer.client.cluster.brokers() == set():
            raise RuntimeError("no Kafka broker known")
        # Ready once the consumer has joined its group the first time (every topic has 12 partitions, more than
        # the launcher's largest replica count). Later rebalances (another replica joining or dying) must not take
        # every replica out of the load balancer at once.
        if self.consumer is not None and not self.consumer_joined:
            if not self.consumer.assignment():
                raise RuntimeError("consumer has not joined its group yet")
            self.consumer_joined = True

    def spawn(self, name: str, work: Callable[[], Awaitable[None]]) -> None:
        async def _guarded() -> None:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s died", name)
                raise

        self.tasks.append(asyncio.create_task(_guarded(), name=name))

    def every(self, name: str, interval_s: float, work: Callable[[], Awaitable[object]]) -> None:
        """A periodic job (timeouts, expiries, year end); a failed round is logged and the next one retries."""

        async def _loop() -> None:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await work()
                except Exception:
                    log.exception("periodic job %s failed; retrying next round", name)

        self.spawn(name, _loop)


async def _start_with_retry(start: Callable[[], Awaitable[None]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + KAFKA_START_TIMEOUT_S
    while True:
        try:
            await start()
            return
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"{what} could not reach Kafka") from exc
            await asyncio.sleep(0.5)


async def start_runtime(settings: ServiceSettings, *, instance: str, client_id: str, migrations: Path,
                        inbound_topic: str | None, handler: BatchHandler | None) -> Runtime:
    db = await open_database(settings, instance, migrations)
    producer = make_producer(settings, client_id)
    await _start_with_retry(producer.start, "producer")
    relay = OutboxRelay(db, producer, batch_size=settings.outbox_batch_size,
                        poll_interval_s=settings.outbox_poll_interval_s, linger_s=settings.outbox_linger_s)
    runtime = Runtime(db=db, producer=producer, relay=relay)
    runtime.spawn("outbox-relay", relay.run)
    if not db.inline:  # PostgreSQL: the audit journal's sealer (shared/audit.py); SQLite chains at commit
        runtime.spawn("audit-seal", audit.Sealer(db).run)
    if inbound_topic and handler:
        consumer = make_consumer(settings, inbound_topic, group_id=client_id)
        await _start_with_retry(consumer.start, "consumer")
        loop = ConsumerLoop(db, consumer, handler, poll_timeout_ms=settings.consumer_poll_timeout_ms,
                            max_records=settings.consumer_max_records if db.inline
                            else min(settings.consumer_max_records, settings.consumer_max_records_postgres),
                            max_attempts=settings.consumer_max_attempts)
        runtime.consumer, runtime.consumer_loop = consumer, loop
        runtime.spawn("consumer", loop.run)
    return runtime


async def stop_runtime(runtime: Runtime) -> None:
    runtime.relay.stop()
    if runtime.consumer_loop:
        runtime.consumer_loop.stop()
    for task in runtime.tasks:
        task.cancel()
    for task in runtime.tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if runtime.consumer:
        with contextlib.suppress(Exception):
            await runtime.consumer.stop()
    with contextlib.suppress(Exception):
        await runtime.producer.stop()
    await runtime.db.dispose()


def serve(app_factory: Callable[[], object], host: str, port: int) -> None:
    """`python -m services.<svc>`: one uvicorn worker (the write lock assumes one process per instance)."""
    import uvicorn

    # Without replicas clients connect directly: no proxy's headers are trusted. Behind HAProxy (`up --replicas`)
    # the launcher sets YIBAO_FORWARDED_ALLOW_IPS=127.0.0.1, so X-Forwarded-For is believed from HAProxy only and
    # the identity service throttles sign-ins per real client address (issue 13).
    forwarded_allow_ips = os.environ.get("YIBAO_FORWARDED_ALLOW_IPS", "").strip()
    uvicorn.run(app_factory(), host=host, port=port, log_level="warning", access_log=False,  # type: ignore[arg-type]
                loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=5,
                proxy_headers=bool(forwarded_allow_ips), forwarded_allow_ips=forwarded_allow_ips or None)


def readiness_checks(state: dict[str, Runtime]) -> list[Callable[[], Awaitable[object]]]:
    """/readyz of every service: its database and Kafka answer (the runtime is filled in by the lifespan)."""

    async def database_reachable() -> None:
        await state["runtime"].check_database()

    async def kafka_reachable() -> dict[str, int] | None:
        runtime = state["runtime"]
        await runtime.check_kafka()
        return {"consumer_lag": runtime.consumer_loop.lag()} if runtime.consumer_loop else None

    return [database_reachable, kafka_reachable]
