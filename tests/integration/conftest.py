"""Fixtures of the integration tests: the in-process federation (tests/support/inprocess.py) on SQLite, and on
PostgreSQL when YIBAO_TEST_POSTGRES_URL names a server; the gateway in process over a fake node
(tests/support/gateway.py) on both, with a signed-in till. The helpers the tests call are in tests/support."""

from __future__ import annotations

import contextlib
import random
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launcher.pos_client import PosClient
from services.national_hub.bootstrap import MIGRATIONS as HUB_MIGRATIONS
from services.national_hub.config import HubSettings
from services.province_node.bootstrap import MIGRATIONS as NODE_MIGRATIONS
from services.province_node.config import NodeSettings
from shared.db import Database, drop_schemas, open_database
from shared.settings import ServiceSettings
from tests.support.gateway import InProcessGateway, in_process_gateway
from tests.support.inprocess import PROVINCES, InProcessFederation, database_url, in_process_federation
from tests.support.replicas import Replicas


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    async with in_process_federation(tmp_path) as federation:
        yield federation


@pytest.fixture
async def pg_fed(tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    """The same federation on PostgreSQL (YIBAO_TEST_POSTGRES_URL; skipped without it), in schemas of its own
    that are dropped afterwards. Several `Database`s opened on one of its schemas are replicas of that service."""
    async with _postgresql_federation(tmp_path) as federation:
        yield federation


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_fed(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    """`fed`, then `pg_fed`: a test of something both backends must do alike."""
    if request.param == "sqlite":
        async with in_process_federation(tmp_path) as federation:
            yield federation
    else:
        async with _postgresql_federation(tmp_path) as federation:
            yield federation


@contextlib.asynccontextmanager
async def _postgresql_federation(tmp_path: Path) -> AsyncIterator[InProcessFederation]:
    postgresql_url = database_url("postgresql")
    prefix = f"r{secrets.token_hex(3)}_"
    try:
        async with in_process_federation(tmp_path, database_url=postgresql_url, schema_prefix=prefix) as federation:
            yield federation
    finally:
        await drop_schemas(postgresql_url, [f"{prefix}hub"] + [f"{prefix}node_{admdvs}" for admdvs in PROVINCES])


@pytest.fixture
async def replicas(pg_fed: InProcessFederation) -> AsyncIterator[Replicas]:
    """Second replicas of pg_fed's services (tests/support/replicas.py), closed afterwards."""
    opened = Replicas(pg_fed)
    try:
        yield opened
    finally:
        for db in opened.opened:
            await db.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    """The gateway's real app over a fake payer's node, on SQLite, then on PostgreSQL."""
    async with in_process_gateway(tmp_path, database_url(request.param)) as made:
        yield made


@pytest.fixture(params=["sqlite", "postgresql"])
async def node_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A province node's database alone, migrated to head, on each backend (PostgreSQL: a fresh schema)."""
    url = database_url(request.param)
    settings = NodeSettings(province_admdvs="640000", home=tmp_path, database_url=url,
                            db_schema_prefix=f"d{secrets.token_hex(3)}_", id_hash_key="k", token_key="k",
                            internal_token="k", operator_token="k")
    async with _database_alone(settings, settings.db_instance, NODE_MIGRATIONS) as db:
        yield db


@pytest.fixture(params=["sqlite", "postgresql"])
async def hub_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """The hub's database alone, migrated to head, on each backend (PostgreSQL: a fresh schema)."""
    url = database_url(request.param)
    settings = HubSettings(home=tmp_path, database_url=url, db_schema_prefix=f"h{secrets.token_hex(3)}_")
    async with _database_alone(settings, "hub", HUB_MIGRATIONS) as db:
        yield db


@contextlib.asynccontextmanager
async def _database_alone(settings: ServiceSettings, instance: str, migrations: Path) -> AsyncIterator[Database]:
    """One service instance's database, migrated to head; its PostgreSQL schema dropped afterwards."""
    db = await open_database(settings, instance, migrations)
    try:
        yield db
    finally:
        await db.dispose()
        if settings.database_url:
            await drop_schemas(settings.database_url, [db.schema])


@pytest.fixture
async def till(gateway: InProcessGateway) -> PosClient:
    """A Chengdu pharmacy, signed in: every payer of the fake node (Ningxia) is cross-province here."""
    return await gateway.till(f"P5101{random.randrange(10**7):07d}", "成都康泰大药房", "510100")
