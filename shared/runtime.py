"""The moving parts every service runs the same way, and the one order they start and stop in
(`service_lifespan`, used by every service's bootstrap):

1. the database (migrated to head before anything is served), the idempotent producer and the outbox relay;
2. the service's context, built over that database by the service (its clients of other services, start-up
   rows), and closed by it;
3. the consumer loop over the inbound topic, with the service's handler registry over that context
   (shared/dispatch.py), and the periodic jobs.

Torn down in reverse: consumer and jobs first (nothing runs on a context being closed), then the context, then
relay, producer and database. The consumer starts only once its context exists."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import audit
from shared.db import Database, open_database
from shared.dead_letters import forget_old_inbox_ids
from shared.dispatch import EventHandlers, Inbox
from shared.kafka import ConsumerLoop, make_consumer, make_producer
from shared.logs import configure_logging
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.runtime")

KAFKA_START_TIMEOUT_S = 60.0
Ctx = TypeVar("Ctx")


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
        """A periodic job (timeouts, expiries, year end); a failed round is logged and the next one retries.
        Its first round comes after `first_round_delay_s`: services started together would otherwise run
        their jobs in step ever after."""

        async def _loop() -> None:
            await asyncio.sleep(first_round_delay_s(interval_s))
            while True:
                try:
                    await work()
                except Exception:
                    log.exception("periodic job %s failed; retrying next round", name)
                await asyncio.sleep(interval_s)

        self.spawn(name, _loop)


def first_round_delay_s(interval_s: float) -> float:
    """Between half an interval and one and a half, at random. The six nodes, the hub and the gateway start
    within a second of each other, and with a fixed first delay their jobs ran in step for good: under `bench
    pos` (2026-12-04) the audit checkpoints of five of the eight came within 0.1 s of each other every 5 s, a
    burst of work on two cores that the tills' answers queued behind. A random phase spreads them; no round
    comes sooner than half an interval after the start."""
    return interval_s * random.uniform(0.5, 1.5)


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


async def _stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    tasks.clear()


@dataclass(frozen=True)
class Wiring(Generic[Ctx]):
    """What a service's bootstrap tells `service_lifespan`: its name (logs), its database instance and Kafka
    client id, how to build (and close) its context over the open runtime, what it consumes and with which
    handlers, and which periodic jobs it runs over the context."""

    service_name: str
    instance: str
    client_id: str
    migrations: Path
    context: Callable[[Runtime], AbstractAsyncContextManager[Ctx]]
    inbound_topic: str | None = None
    handlers: EventHandlers[Ctx] | None = None
    jobs: Callable[[Runtime, Ctx], None] | None = None


async def _open_runtime(settings: ServiceSettings, wiring: Wiring[Any]) -> Runtime:
    db = await open_database(settings, wiring.instance, wiring.migrations)
    try:
        producer = make_producer(settings, wiring.client_id)
        await _start_with_retry(producer.start, "producer")
    except BaseException:
        await db.dispose()
        raise
    relay = OutboxRelay(db, producer, batch_size=settings.outbox_batch_size,
                        poll_interval_s=settings.outbox_poll_interval_s, linger_s=settings.outbox_linger_s)
    runtime = Runtime(db=db, producer=producer, relay=relay)
    runtime.spawn("outbox-relay", relay.run)
    if not db.inline:  # PostgreSQL: the audit journal's sealer (shared/audit.py); SQLite chains at commit
        runtime.spawn("audit-seal", audit.Sealer(db).run)
    return runtime


async def _close_runtime(runtime: Runtime) -> None:
    runtime.relay.stop()
    await _stop_tasks(runtime.tasks)
    with contextlib.suppress(Exception):
        await runtime.producer.stop()
    await runtime.db.dispose()


async def _start_consumer(settings: ServiceSettings, runtime: Runtime, topic: str, inbox: Inbox[Any],
                          group_id: str) -> None:
    consumer = make_consumer(settings, topic, group_id=group_id)
    await _start_with_retry(consumer.start, "consumer")
    runtime.consumer = consumer
    runtime.consumer_loop = ConsumerLoop(
        runtime.db, consumer, inbox, check=inbox.problem, poll_timeout_ms=settings.consumer_poll_timeout_ms,
        max_records=settings.consumer_max_records if runtime.db.inline
        else min(settings.consumer_max_records, settings.consumer_max_records_postgres),
        max_attempts=settings.consumer_max_attempts)
    runtime.spawn("consumer", runtime.consumer_loop.run)
    runtime.every("inbox-retention", settings.inbox_retention_interval_s,
                  lambda: forget_old_inbox_ids(runtime.db, settings.inbox_retention_s))


async def _stop_consumer_and_jobs(runtime: Runtime, first_own_task: int) -> None:
    if runtime.consumer_loop is not None:
        runtime.consumer_loop.stop()
    await _stop_tasks(runtime.tasks[first_own_task:])
    del runtime.tasks[first_own_task:]
    if runtime.consumer is not None:
        with contextlib.suppress(Exception):
            await runtime.consumer.stop()


@contextlib.asynccontextmanager
async def service_lifespan(settings: ServiceSettings, wiring: Wiring[Ctx]) -> AsyncIterator[tuple[Runtime, Ctx]]:
    """Database → context → consumer and periodic jobs; yields (runtime, context); stops in reverse."""
    runtime = await _open_runtime(settings, wiring)
    try:
        async with wiring.context(runtime) as ctx:
            first_own_task = len(runtime.tasks)
            try:
                if wiring.inbound_topic and wiring.handlers is not None:
                    await _start_consumer(settings, runtime, wiring.inbound_topic, Inbox(wiring.handlers, ctx),
                                          wiring.client_id)
                if wiring.jobs is not None:
                    wiring.jobs(runtime, ctx)
                yield runtime, ctx
            finally:
                await _stop_consumer_and_jobs(runtime, first_own_task)
    finally:
        await _close_runtime(runtime)


def fastapi_lifespan(settings: ServiceSettings, wiring: Wiring[Ctx], state: dict[str, Runtime]) -> Callable[
        [Any], AbstractAsyncContextManager[None]]:
    """The FastAPI lifespan of a service: logging, then `service_lifespan`; the runtime goes into `state` (what
    /readyz, the dead letters and the audit routes read) and the context into `app.state.ctx` (what the
    entrypoints read)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        configure_logging(wiring.service_name, settings.log_level)
        async with service_lifespan(settings, wiring) as (runtime, ctx):
            state["runtime"] = runtime
            app.state.ctx = ctx
            _tune_gc_after_start()
            yield

    return lifespan


# Python's cyclic garbage collector, set for a long-running service. With CPython's defaults a young collection
# runs every 700 net allocations, and an old one walks every object the service built at start (routes, models,
# the gateway's registry and catalogues) again and again: under `bench pos` the gateway spent 2.1 s of its 24 s
# in collections, about 6% after its start (docs/performance-log.md, 2026-12-03 evening). Once the service is
# up, what it built is frozen (never walked again) and young collections run at most a fourteenth as often.
# Memory is still freed by reference counting the moment it is let go; only cycles wait a little longer for
# their collection.
GC_THRESHOLDS = (10_000, 20, 100)
_tune_gc_at_start = False


def _tune_gc_after_start() -> None:
    """Called when the service's start is done, in processes started by `serve` only: a test that runs a service
    in its own process leaves the test runner's collector as it was."""
    if not _tune_gc_at_start:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve(app_factory: Callable[[], object], host: str, port: int) -> None:
    """`python -m services.<svc>`: one uvicorn worker (the write lock assumes one process per instance)."""
    import uvicorn

    global _tune_gc_at_start
    _tune_gc_at_start = True
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
