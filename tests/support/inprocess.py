"""The in-process federation.

The in-process federation is the hub and two province nodes, each on its own SQLite database created by the
service's own Alembic migrations, running their real use cases and their real Kafka batch handlers. What stands
in for Kafka is the outbox itself: `pump` reads what each producer committed to its `outbox` table, decodes it
the way the consumer loop does (`Envelope.from_bytes`), checks it against the CONSUMER's schema and the golden
sample, and hands it to the consumer's batch handler inside one unit of work with inbox dedupe (what
`ConsumerLoop` does). The nodes' `HubClient` is the real client, given a transport (its constructor's seam) that
answers with the hub's real FastAPI app in process, so internal HTTP bodies go through the real serialisation and
the real routes.

No Kafka, no network: the real-federation tests live in tests/e2e."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.national_hub.bootstrap import MIGRATIONS as HUB_MIGRATIONS
from services.national_hub.bootstrap import bootstrap as hub_bootstrap
from services.national_hub.config import HubSettings
from services.national_hub.service_layer import messages as hub_messages
from services.national_hub.service_layer.context import HubContext
from services.province_node.adapters import ledger_repo
from services.province_node.adapters.hub_client import HubClient
from services.province_node.bootstrap import MIGRATIONS as NODE_MIGRATIONS
from services.province_node.config import NodeSettings
from services.province_node.service_layer import messages as node_messages
from services.province_node.service_layer.context import NodeContext
from shared.clock import FixedClock
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.db import Database, UnitOfWork, drop_schemas, open_database, schema_name
from shared.kafka import filter_new
from shared.messaging_tables import OutboxMessage
from shared.settings import ServiceSettings
from shared.tables import table
from tests.support.wire import Wired, consumer_accepts, with_unknown_fields

# 10:00 in Asia/Shanghai: outside the default quiet hours (22:00-06:00), which stay on in these tests.
START = datetime(2025, 1, 15, 2, 0, tzinfo=UTC)
SOURCE, DESTINATION = "640000", "620000"
PROVINCES = (SOURCE, DESTINATION)
TRANSFER_TIMEOUT_S = 60.0
# Every setting that matters is given explicitly, so a YIBAO_* variable left in the environment (the e2e
# fixture sets some for its session) cannot change what these tests see.
SECRETS: dict[str, Any] = {
    "database_url": "",
    "id_hash_key": "contract-test-id-hash-key",
    "token_key": "contract-test-token-key",
    "internal_token": "contract-test-internal-token",
    "operator_token": "contract-test-operator-token",
    "hub_url": "http://hub.contract-test",
}
_OUTBOX = table(OutboxMessage)


# ------------------------------------------------------------------------------------------ internal HTTP


@dataclass(frozen=True)
class Exchange:
    """One internal HTTP call as it went over the (in-process) wire."""

    method: str
    path: str
    request_json: Any
    status: int
    response_json: Any


class RecordingTransport(httpx.AsyncBaseTransport):
    """Answers the real HubClient's requests with the hub's real app, recording each exchange; optionally adds
    unknown fields to request and response bodies (a newer caller, a newer hub)."""

    def __init__(self, app: FastAPI, exchanges: list[Exchange]) -> None:
        self._inner = httpx.ASGITransport(app=app)
        self.exchanges = exchanges
        self.add_unknown_fields = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        if self.add_unknown_fields and body:
            request = _rebuilt(request, _with_extra(orjson.loads(body)))
            body = request.content
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        if self.add_unknown_fields and content and response.status_code < 400:
            content = orjson.dumps(_with_extra(orjson.loads(content)))
        self.exchanges.append(Exchange(request.method, request.url.path, orjson.loads(body) if body else None,
                                       response.status_code, orjson.loads(content) if content else None))
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        return httpx.Response(response.status_code, headers=headers, content=content)


def _with_extra(value: Any) -> Any:
    if isinstance(value, dict):
        return {**{k: _with_extra(v) for k, v in value.items()}, "x_added_later": "ignored"}
    if isinstance(value, list):
        return [_with_extra(item) for item in value]
    return value


def _rebuilt(request: httpx.Request, body: Any) -> httpx.Request:
    headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
    return httpx.Request(request.method, request.url, headers=headers, content=orjson.dumps(body))


def wired_hub_client(settings: NodeSettings, transport: httpx.AsyncBaseTransport) -> HubClient:
    """The node's real HubClient, built by its own constructor (base URL, token header, timeout), over the
    in-process transport instead of a TCP one."""
    return HubClient(settings.hub_url, settings.internal_token, settings.internal_http_timeout_s,
                     transport=transport)


# ------------------------------------------------------------------------------------------ the federation


@dataclass
class InProcessFederation:
    clock: FixedClock
    hub: HubContext
    hub_app: FastAPI
    nodes: dict[str, NodeContext]
    transport: RecordingTransport
    exchanges: list[Exchange]
    delivered: list[Wired] = field(default_factory=list)

    def node(self, admdvs: str) -> NodeContext:
        return self.nodes[admdvs]

    def consumer(self, topic: str) -> tuple[Database, Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]]:
        if topic == topics.HUB_INBOUND:
            return self.hub.db, functools.partial(hub_messages.handle_batch, self.hub)
        for admdvs, ctx in self.nodes.items():
            if topic == topics.province_inbound(admdvs):
                return ctx.db, functools.partial(node_messages.handle_batch, ctx)
        raise AssertionError(f"a message went to {topic}, which no service consumes")

    async def take_outbox(self, db: Database) -> list[Wired]:
        """Everything committed to one producer's outbox, in order, removed as the relay removes it once Kafka
        acknowledged it."""
        async with UnitOfWork(db) as uow:
            rows = (await uow.execute(sa.select(_OUTBOX).order_by(_OUTBOX.c.seq))).all()
            await uow.execute(sa.delete(_OUTBOX))
            await uow.commit()
        return [Wired(row.topic, row.key, Envelope.from_bytes(bytes(row.payload))) for row in rows]

    async def take_all(self) -> list[Wired]:
        taken = await self.take_outbox(self.hub.db)
        for ctx in self.nodes.values():
            taken += await self.take_outbox(ctx.db)
        return taken

    async def deliver(self, messages: list[Wired], *, unknown_fields: bool = False) -> None:
        """Hand messages to their consumers as the consumer loop does: per topic, one unit of work per batch,
        inbox dedupe first, commit after."""
        for wired in messages:
            consumer_accepts(wired)
        by_topic: dict[str, list[Envelope]] = {}
        for wired in messages:
            env = with_unknown_fields(wired.envelope) if unknown_fields else wired.envelope
            by_topic.setdefault(wired.topic, []).append(env)
        for topic, envelopes in by_topic.items():
            db, handle = self.consumer(topic)
            async with UnitOfWork(db) as uow:
                fresh = await filter_new(uow, envelopes)
                if fresh:
                    await handle(uow, fresh)
                await uow.commit()
        self.delivered.extend(messages)

    async def pump(self, *, unknown_fields: bool = False, twice: bool = False) -> list[Wired]:
        """Relay and consume until no outbox holds anything; returns what went over the wire. `twice`: every
        batch is delivered a second time (Kafka is at-least-once; the relay republishes after a crash)."""
        moved: list[Wired] = []
        for _ in range(20):
            batch = await self.take_all()
            if not batch:
                return moved
            await self.deliver(batch, unknown_fields=unknown_fields)
            if twice:
                await self.deliver(batch, unknown_fields=unknown_fields)
            moved += batch
        raise AssertionError("messages keep flowing: a loop between services?")


def database_url(backend: str) -> str:
    """The database URL of `backend`: empty for SQLite; YIBAO_TEST_POSTGRES_URL for PostgreSQL, the test skipped
    without it (.ci/run sets it)."""
    if backend == "sqlite":
        return ""
    url = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
    if not url:
        pytest.skip("YIBAO_TEST_POSTGRES_URL not set: PostgreSQL run skipped (.ci/run sets it)")
    return url


@contextlib.asynccontextmanager
async def scratch_database(backend: str, home: Path, instance: str, migrations: Path, scratch: sa.MetaData,
                           schema_prefix: str) -> AsyncIterator[Database]:
    """A service instance's database migrated to head, plus the test's own `scratch` tables, on `backend` (a
    SQLite file under `home`, or a schema of its own on PostgreSQL, dropped afterwards)."""
    url = database_url(backend)
    settings = ServiceSettings(home=home, database_url=url, db_schema_prefix=schema_prefix)
    database = await open_database(settings, instance, migrations)
    if database.sync_engine is not None:
        scratch.create_all(database.sync_engine)
    else:
        assert database.engine is not None
        async with database.engine.begin() as conn:
            await conn.run_sync(scratch.create_all)
    try:
        yield database
    finally:
        await database.dispose()
        if url:
            await drop_schemas(url, [schema_name(settings, instance)])


@contextlib.asynccontextmanager
async def in_process_federation(home: Path, *, database_url: str = "",
                                schema_prefix: str = "yibao_") -> AsyncIterator[InProcessFederation]:
    """The hub and both nodes, each on its own database: SQLite files under `home` (database_url empty), or
    one PostgreSQL schema per service instance, named with `schema_prefix`, in `database_url`'s database."""
    clock = FixedClock(START)
    common = {**SECRETS, "database_url": database_url}
    hub_settings = HubSettings(home=home, transfer_timeout_s=TRANSFER_TIMEOUT_S, db_schema_prefix=schema_prefix,
                               **common)
    # What shared.runtime.service_lifespan does first: the instance's database, migrated to head by Alembic.
    hub_db = await open_database(hub_settings, "hub", HUB_MIGRATIONS)
    hub = HubContext(settings=hub_settings, db=hub_db, clock=clock)
    # The hub's real app (routers, error handlers); its lifespan (Kafka) never runs under ASGITransport, so the
    # context it would build is given here.
    hub_app = hub_bootstrap(hub_settings, clock)
    hub_app.state.ctx = hub
    exchanges: list[Exchange] = []
    transport = RecordingTransport(hub_app, exchanges)
    nodes: dict[str, NodeContext] = {}
    try:
        for admdvs in PROVINCES:
            settings = NodeSettings(province_admdvs=admdvs, home=home, transfer_quiet_hours="22:00-06:00",
                                    transfer_max_per_day=3, transfer_max_fen=200_000, password_hash_iterations=1000,
                                    db_schema_prefix=schema_prefix, **common)
            db = await open_database(settings, settings.db_instance, NODE_MIGRATIONS)
            nodes[admdvs] = NodeContext(settings=settings, db=db, clock=clock,
                                        hub=wired_hub_client(settings, transport), policy=settings.transfer_policy())
            async with UnitOfWork(db) as uow:
                await ledger_repo.ensure_system_accounts(uow, clock.now())
                await uow.commit()
        yield InProcessFederation(clock=clock, hub=hub, hub_app=hub_app, nodes=nodes, transport=transport,
                                  exchanges=exchanges)
    finally:
        for ctx in nodes.values():
            await ctx.hub.close()
            await ctx.db.dispose()
        await hub_db.dispose()

