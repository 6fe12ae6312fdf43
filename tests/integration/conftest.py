"""Helpers of the contract tests: the golden samples, and an in-process federation.

The in-process federation is the hub and two province nodes, each on its own SQLite database created by the
service's own Alembic migrations, running their real use cases and their real Kafka batch handlers. What stands
in for Kafka is the outbox itself: `pump` reads what each producer committed to its `outbox` table, decodes it
the way the consumer loop does (`Envelope.from_bytes`), checks it against the CONSUMER's schema and the golden
sample, and hands it to the consumer's batch handler inside one unit of work with inbox dedupe (what
`ConsumerLoop` does). The nodes' `HubClient` is the real client; only its transport is swapped for the hub's
real FastAPI app in process, so internal HTTP bodies go through the real serialisation and the real routes.

No Kafka, no network: the real-federation tests live in tests/e2e."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import BaseModel

from services.national_hub.bootstrap import MIGRATIONS as HUB_MIGRATIONS
from services.national_hub.bootstrap import bootstrap as hub_bootstrap
from services.national_hub.config import HubSettings
from services.national_hub.service_layer import directory as hub_directory
from services.national_hub.service_layer import messages as hub_messages
from services.national_hub.service_layer.context import HubContext
from services.province_node.adapters import ledger_repo
from services.province_node.adapters.hub_client import HubClient
from services.province_node.bootstrap import MIGRATIONS as NODE_MIGRATIONS
from services.province_node.config import NodeSettings
from services.province_node.domain import ledger
from services.province_node.service_layer import bindings as node_bindings
from services.province_node.service_layer import messages as node_messages
from services.province_node.service_layer import persons as node_persons
from services.province_node.service_layer import transfers as node_transfers
from services.province_node.service_layer.context import NodeContext
from shared.clock import FixedClock
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.events import EVENT_TYPES, Payload
from shared.db import Database, UnitOfWork, drop_schemas, open_database
from shared.ids import id_hash, make_id_no
from shared.kafka import filter_new
from shared.messaging_tables import OutboxMessage
from shared.tokens import Claims

SAMPLES = Path(__file__).parent / "samples"

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
_OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------ golden samples


def load_sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SAMPLES / name).read_bytes())
    return loaded


def event_sample_name(event_type: str) -> str:
    return f"{event_type}.json"


def key_tree(value: Any) -> Any:
    """The shape of a JSON value: nested keys only (a list by its first item). Two messages with the same tree
    carry the same fields; values are the samples' business."""
    if isinstance(value, dict):
        return {key: key_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        return [key_tree(value[0])] if value else []
    return None


def naive_datetimes(model: BaseModel, where: str = "") -> list[str]:
    """Fields holding a datetime without a zone: on the wire that is an instant nobody can place."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            found.append(where + name)
        elif isinstance(value, BaseModel):
            found.extend(naive_datetimes(value, f"{where}{name}."))
    return found


# ------------------------------------------------------------------------------------------ the wire


@dataclass(frozen=True)
class Wired:
    """One message as a producer committed it to its outbox: Kafka topic, key, decoded envelope."""

    topic: str
    key: str
    envelope: Envelope

    @property
    def type(self) -> str:
        return self.envelope.type


def consumer_accepts(wired: Wired) -> Payload:
    """What every consumer does with a message, plus what the contract promises about it: the consumer's class
    for the type validates the data; the shape equals the golden sample's; the key is the id of the thing the
    message is about (topics.py: that keeps one transfer's messages in one partition, in order)."""
    env = wired.envelope
    assert env.type in EVENT_TYPES, f"{env.type} has no consumer schema in shared.contracts.events"
    payload = EVENT_TYPES[env.type].model_validate(env.data)
    sample = load_sample(event_sample_name(env.type))
    assert key_tree(env.model_dump(mode="json")) == key_tree(sample), (
        f"{env.type} as produced differs in shape from its golden sample {event_sample_name(env.type)}")
    assert env.time.tzinfo is not None and not naive_datetimes(payload), (
        f"{env.type} carries naive datetimes: {naive_datetimes(payload)}")
    assert env.id and env.source and env.trace_id and wired.key
    about = _subject_id(payload)
    if about is not None:
        assert wired.key == about, f"{env.type} keyed by {wired.key!r}, not by the id it is about ({about!r})"
    return payload


def _subject_id(payload: Payload) -> str | None:
    data = payload.model_dump()
    if "transfer_id" in data:
        return str(data["transfer_id"])
    if isinstance(data.get("binding"), dict):
        return str(data["binding"]["binding_id"])
    return None


def with_unknown_fields(env: Envelope) -> Envelope:
    """The same message as a newer producer would send it (a field added within the version, at both levels)."""
    raw = orjson.loads(env.to_bytes())
    raw["x_added_later"] = {"any": ["thing"]}
    raw["data"]["x_added_later"] = 42
    if isinstance(raw["data"].get("binding"), dict):
        raw["data"]["binding"]["x_added_later"] = "yes"
    return Envelope.from_bytes(orjson.dumps(raw))


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


def wired_hub_client(settings: NodeSettings, transport: RecordingTransport) -> HubClient:
    """The node's real HubClient, built by its own constructor (base URL, token header, timeout), whose
    httpx client gets the in-process transport instead of a TCP one."""
    real_client = httpx.AsyncClient
    with mock.patch.object(httpx, "AsyncClient", functools.partial(real_client, transport=transport)):
        return HubClient(settings.hub_url, settings.internal_token, settings.internal_http_timeout_s)


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


@contextlib.asynccontextmanager
async def in_process_federation(home: Path, *, database_url: str = "",
                                schema_prefix: str = "yibao_") -> AsyncIterator[InProcessFederation]:
    """The hub and both nodes, each on its own database: SQLite files under `home` (database_url empty), or
    one PostgreSQL schema per service instance, named with `schema_prefix`, in `database_url`'s database."""
    clock = FixedClock(START)
    common = {**SECRETS, "database_url": database_url}
    hub_settings = HubSettings(home=home, transfer_timeout_s=TRANSFER_TIMEOUT_S, db_schema_prefix=schema_prefix,
                               **common)
    # What shared.runtime.start_runtime does first: the instance's database, migrated to head by Alembic.
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


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    async with in_process_federation(tmp_path) as federation:
        yield federation


@pytest.fixture
async def pg_fed(tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    """The same federation on PostgreSQL (YIBAO_TEST_POSTGRES_URL; skipped without it), in schemas of its own
    that are dropped afterwards. Several `Database`s opened on one of its schemas are replicas of that service."""
    database_url = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
    if not database_url:
        pytest.skip("YIBAO_TEST_POSTGRES_URL not set: PostgreSQL run skipped (.ci/run sets it)")
    prefix = f"r{secrets.token_hex(3)}_"
    try:
        async with in_process_federation(tmp_path, database_url=database_url, schema_prefix=prefix) as federation:
            yield federation
    finally:
        await drop_schemas(database_url, [f"{prefix}hub"] + [f"{prefix}node_{admdvs}" for admdvs in PROVINCES])


# ------------------------------------------------------------------------------------------ people and money


@dataclass(frozen=True)
class Person:
    id_no: str
    name: str
    admdvs: str
    psn_no: str

    def claims(self, now: datetime, *, face: bool = True) -> Claims:
        """What the hub's identity service would have issued: face-verified just now unless told otherwise."""
        now_s = int(now.timestamp())
        return Claims(self.psn_no, self.admdvs, ("face",) if face else ("pwd",), now_s, now_s + 1800)


async def in_uow(db: Database, use_case: Callable[[UnitOfWork], Awaitable[tuple[int, Any]]]) -> tuple[int, Any]:
    """A use case in one committed unit of work, as run_idempotent runs it after its `prepare` (which the
    helpers here await first, outside the unit of work, as run_idempotent does)."""
    async with UnitOfWork(db) as uow:
        answer = await use_case(uow)
        await uow.commit()
    return answer


async def end_binding(fed: InProcessFederation, party: Person, binding_id: str) -> dict[str, Any]:
    """`DELETE /v1/bindings/{id}` by either party, at that party's node."""
    ctx = fed.node(party.admdvs)
    snapshot = await node_bindings.end_at_hub(ctx, party.claims(fed.clock.now()), binding_id)
    status, view = await in_uow(ctx.db, lambda uow: node_bindings.record_change(ctx, uow, snapshot))
    assert status == 200 and view["state"] == "ENDED", view
    ended: dict[str, Any] = view
    return ended


async def import_person(fed: InProcessFederation, admdvs: str, first17: str, name: str, *, insutype: str,
                        personal_account_fen: int = 0, password: str | None = None,
                        face_image_b64: str | None = None) -> Person:
    """The node's admin import (which registers the person in the hub directory over internal HTTP)."""
    ctx = fed.node(admdvs)
    id_no = make_id_no(first17)
    raw: dict[str, Any] = {"id_no": id_no, "name": name, "phone": "13800138000", "insutype": insutype,
                           "pooling_admdvs": admdvs[:2] + "0100", "personal_account_fen": personal_account_fen,
                           "password": password, "face_image_b64": face_image_b64}
    plan = await node_persons.prepare_import(ctx, node_persons.ImportRequest(persons=[raw]))
    status, body = await in_uow(ctx.db, lambda uow: node_persons.import_persons(ctx, uow, plan))
    assert status == 200 and body == {"imported": 1, "rejected": []}, body
    psn_no = node_persons.psn_no_for(admdvs, id_hash(ctx.settings.id_hash_key_bytes, id_no))
    return Person(id_no=id_no, name=name, admdvs=admdvs, psn_no=psn_no)


async def import_kinship(fed: InProcessFederation, a: Person, b: Person, relation: str) -> None:
    """Operator import at the hub: `b` is `relation` of `a`."""
    body = hub_directory.KinshipImport(relations=[
        hub_directory.KinshipRelation(id_no_a=a.id_no, id_no_b=b.id_no, relation=relation)])
    async with UnitOfWork(fed.hub.db) as uow:
        await hub_directory.import_kinship(fed.hub, uow, body)
        await uow.commit()


GIVER_PA_FEN = 100_000


async def family(fed: InProcessFederation, *, mother_admdvs: str = DESTINATION) -> tuple[Person, Person]:
    """A Ningxia employee with 1000 yuan in her personal account, and her mother (a resident, no personal
    account) insured in Gansu, known to the kinship registry as her parent."""
    giver = await import_person(fed, SOURCE, "64010219850312002", "王芳", insutype="310",
                                personal_account_fen=GIVER_PA_FEN, password="secret-pw")
    mother = await import_person(fed, mother_admdvs, mother_admdvs[:4] + "0219580701004", "李秀英",
                                 insutype="390", face_image_b64="ZmFjZS1vZi10aGUtbW90aGVy")
    await import_kinship(fed, giver, mother, "parent")
    return giver, mother


async def create_binding(fed: InProcessFederation, giver: Person, relative: Person, relation: str) -> str:
    ctx = fed.node(giver.admdvs)
    body = node_bindings.BindingCreate(relative_id_no=relative.id_no, relative_name=relative.name,
                                       relation=relation)
    snapshot = await node_bindings.request_binding(ctx, giver.claims(fed.clock.now()), body,
                                                   f"{giver.psn_no}:{relative.psn_no}")
    status, created = await in_uow(ctx.db, lambda uow: node_bindings.record_created(ctx, uow, snapshot))
    assert status == 201 and created["state"] == "PENDING_CONSENT", created
    binding_id: str = created["binding_id"]
    return binding_id


async def confirm_binding(fed: InProcessFederation, relative: Person, binding_id: str) -> None:
    ctx = fed.node(relative.admdvs)
    snapshot = await node_bindings.confirm_at_hub(ctx, relative.claims(fed.clock.now()), binding_id)
    status, view = await in_uow(ctx.db, lambda uow: node_bindings.record_change(ctx, uow, snapshot))
    assert status == 200 and view["state"] == "ACTIVE", view


async def active_binding(fed: InProcessFederation, giver: Person, relative: Person, relation: str = "parent") -> str:
    """Created by the giver, confirmed by the relative (face step-up), replicated to both nodes by events."""
    binding_id = await create_binding(fed, giver, relative, relation)
    await fed.pump()
    await confirm_binding(fed, relative, binding_id)
    await fed.pump()
    return binding_id


async def open_wallet(fed: InProcessFederation, person: Person) -> None:
    ctx = fed.node(person.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        status, _ = await node_persons.open_wallet(ctx, uow, person.psn_no)
        await uow.commit()
    assert status == 201


async def send_transfer(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int) -> str:
    ctx = fed.node(giver.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        status, body = await node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id,
                                                          amount_fen)
        await uow.commit()
    assert status == 202 and body["state"] == "ACCEPTED", body
    transfer_id: str = body["transfer_id"]
    return transfer_id


async def balance_fen(fed: InProcessFederation, admdvs: str, account_id: str) -> int | None:
    async with UnitOfWork(fed.node(admdvs).db) as uow:
        return await ledger_repo.balance(uow, account_id)


async def transfer_out_state(fed: InProcessFederation, giver: Person, transfer_id: str) -> str:
    async with UnitOfWork(fed.node(giver.admdvs).db) as uow:
        row = (await uow.execute(sa.select(node_transfers.OUT.c.state).where(
            node_transfers.OUT.c.transfer_id == transfer_id))).one()
    state: str = row.state
    return state


async def assert_money_conserved(fed: InProcessFederation, citizen_total_fen: int) -> None:
    """Every node's journal balances; nothing is left in flight; what one province's clearing account owes,
    another's is owed; the citizens together hold what was funded."""
    citizens = clearing = 0
    for admdvs, ctx in fed.nodes.items():
        async with UnitOfWork(ctx.db) as uow:
            assert await ledger_repo.journal_is_balanced(uow), f"journal of {admdvs} does not balance"
            totals = await ledger_repo.totals_by_kind(uow)
        assert sum(totals.values()) == 0, totals
        assert totals.get(ledger.IN_FLIGHT, 0) == 0, f"{admdvs} still has money in flight: {totals}"
        citizens += totals.get("PA", 0) + totals.get("WALLET", 0)
        clearing += totals.get(ledger.CLEARING, 0)
    assert clearing == 0
    assert citizens == citizen_total_fen
