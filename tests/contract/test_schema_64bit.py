"""Money, money counters and integer ids are 64-bit in every service's schema (review scale_out.md B13).

PostgreSQL's INTEGER is 32-bit: SYS:FUNDING (minus every opening balance and monthly credit) passes -2^31 fen at
-21.47 M yuan, and an int4 sequence at 1k postings/s runs out within weeks. SQLite's INTEGER is 64-bit, so no
SQLite test ever sees it. Two checks:
- the table models (always): every integer column is 64-bit on PostgreSQL unless it is one of the few small
  numbers listed below;
- the schema each service's Alembic migrations build on PostgreSQL (when YIBAO_TEST_POSTGRES_URL names a
  server): the same rule for what the database really holds, sequences included, the migrated schema agrees with
  the models, and a schema migrated before the change keeps its data and takes amounts above 2^31 afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.dialects import postgresql

from services.national_hub.adapters.tables import HUB_TABLES
from services.national_hub.bootstrap import MIGRATIONS as HUB_MIGRATIONS
from services.national_hub.config import HubSettings
from services.pharmacy_gateway.adapters.tables import GATEWAY_TABLES
from services.pharmacy_gateway.bootstrap import MIGRATIONS as GATEWAY_MIGRATIONS
from services.pharmacy_gateway.config import GatewaySettings
from services.province_node.adapters.tables import NODE_TABLES
from services.province_node.bootstrap import MIGRATIONS as NODE_MIGRATIONS
from services.province_node.config import NodeSettings
from shared.db import Database, drop_schemas, open_database, schema_name
from shared.settings import ServiceSettings
from tests.support.migrations import upgrade_to

# The only integer columns that may stay 32-bit: none counts money or grows with traffic.
SMALL_INTEGERS = {
    "version",  # of one binding, quota or settlement: a handful of changes in its life
    "year",  # a calendar year
    "status_code",  # an HTTP status
}
PG_SMALL_TYPES = {"smallint", "integer"}


@dataclass(frozen=True)
class Service:
    name: str
    tables: tuple[Any, ...]
    migrations: Path
    previous_head: str  # the head before the 64-bit revision

    def metadata(self) -> sa.MetaData:
        metadata = sa.MetaData()
        for table in self.tables:
            table.__table__.to_metadata(metadata)
        return metadata


SERVICES = [
    Service("province_node", NODE_TABLES, NODE_MIGRATIONS, "38db91022a47"),
    Service("national_hub", HUB_TABLES, HUB_MIGRATIONS, "6560ec6210ab"),
    Service("pharmacy_gateway", GATEWAY_TABLES, GATEWAY_MIGRATIONS, "fccc09276bce"),
]
IDS = [service.name for service in SERVICES]


def _is_money_or_id(column: str) -> bool:
    return column.endswith("_fen") or column in ("seq", "id") or column.endswith("_id")


# ------------------------------------------------------------------------------------------ the models


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_every_integer_column_of_the_models_is_64_bit_on_postgresql(service: Service) -> None:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    offending = []
    for table in service.metadata().sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, sa.Integer) or column.name in SMALL_INTEGERS:
                continue
            if column.type.compile(dialect=dialect).lower() in PG_SMALL_TYPES:
                offending.append(f"{table.name}.{column.name}")
    assert offending == [], f"32-bit integer columns in the {service.name} models: {offending}"


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_money_and_id_columns_are_integers(service: Service) -> None:
    """`*_fen` is integer fen (never a float or a decimal); an integer `*_id` or `seq` is never small."""
    offending = []
    for table in service.metadata().sorted_tables:
        for column in table.columns:
            if column.name.endswith("_fen") and not isinstance(column.type, sa.Integer):
                offending.append(f"{table.name}.{column.name} ({column.type})")
            if _is_money_or_id(column.name) and column.name in SMALL_INTEGERS:
                offending.append(f"{table.name}.{column.name} (listed as small)")
    assert offending == [], f"money columns that are not integer fen in {service.name}: {offending}"


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_autoincrement_keys_stay_integer_primary_key_on_sqlite(service: Service) -> None:
    """SQLite autoincrements only a column declared exactly INTEGER PRIMARY KEY (a rowid alias)."""
    from sqlalchemy.dialects import sqlite

    for table in service.metadata().sorted_tables:
        column = table.autoincrement_column
        if column is not None:
            assert column.type.compile(dialect=sqlite.dialect()) == "INTEGER", f"{table.name}.{column.name}"


def _flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    flat: list[tuple[Any, ...]] = []
    for diff in diffs:
        if isinstance(diff, list):
            flat.extend(tuple(item) for item in diff)
        else:
            flat.append(tuple(diff))
    return flat


def _differences(connection: sa.Connection, service: Service) -> list[tuple[Any, ...]]:
    """What Alembic's autogenerate would still want to change (`make migration` on a schema at head)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return _flatten(compare_metadata(context, service.metadata()))


@pytest.mark.parametrize("service", SERVICES, ids=IDS)
def test_migrations_and_models_agree_on_sqlite(service: Service, tmp_path: Path) -> None:
    """The scratch SQLite database of `make migration`, at head, matches the models: no spurious revision."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
    try:
        with engine.begin() as connection:
            config = Config()
            config.set_main_option("script_location", str(service.migrations))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            assert _differences(connection, service) == []
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------------------ PostgreSQL


POSTGRES_URL = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="YIBAO_TEST_POSTGRES_URL not set")


def _settings(service: Service, home: Path, prefix: str) -> ServiceSettings:
    common: dict[str, Any] = {"home": home, "database_url": POSTGRES_URL, "db_schema_prefix": prefix}
    if service.name == "province_node":
        return NodeSettings(province_admdvs="640000", **common)
    if service.name == "national_hub":
        return HubSettings(**common)
    return GatewaySettings(**common)


def _instance(service: Service) -> str:
    return {"province_node": "node_640000", "national_hub": "hub", "pharmacy_gateway": "gateway"}[service.name]


@dataclass
class Migrated:
    service: Service
    database: Database
    schema: str


@pytest.fixture
async def scratch_prefix() -> AsyncIterator[str]:
    """A schema prefix of this test's own; its schemas are dropped afterwards."""
    prefix = f"t64_{secrets.token_hex(3)}_"
    yield prefix
    await drop_schemas(POSTGRES_URL, [f"{prefix}{_instance(service)}" for service in SERVICES])


async def _migrated(service: Service, home: Path, prefix: str, to: str = "head") -> Migrated:
    settings = _settings(service, home, prefix)
    database = await open_database(settings, _instance(service), service.migrations if to == "head" else None)
    if to != "head":
        await upgrade_to(database, service.migrations, to)
    return Migrated(service, database, schema_name(settings, _instance(service)))


async def _columns(migrated: Migrated) -> list[tuple[str, str, str]]:
    assert migrated.database.engine is not None
    async with migrated.database.engine.connect() as conn:
        rows = await conn.execute(sa.text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = :schema ORDER BY table_name, ordinal_position"), {"schema": migrated.schema})
        return [(row.table_name, row.column_name, row.data_type) for row in rows]


@needs_postgres
@pytest.mark.parametrize("service", SERVICES, ids=IDS)
async def test_migrated_postgresql_schema_is_64_bit(service: Service, tmp_path: Path, scratch_prefix: str) -> None:
    migrated = await _migrated(service, tmp_path, scratch_prefix)
    try:
        columns = await _columns(migrated)
        offending = [f"{table}.{column}" for table, column, data_type in columns
                     if table != "alembic_version" and data_type in PG_SMALL_TYPES and column not in SMALL_INTEGERS]
        assert offending == [], f"32-bit integer columns in the migrated {service.name} schema: {offending}"
        assert migrated.database.engine is not None
        async with migrated.database.engine.connect() as conn:
            sequences = (await conn.execute(sa.text(
                "SELECT sequencename, data_type FROM pg_sequences WHERE schemaname = :schema"),
                {"schema": migrated.schema})).all()
        assert sequences, "no sequence: the autoincrement keys were not created as SERIAL"
        small = [f"{row.sequencename} ({row.data_type})" for row in sequences if row.data_type != "bigint"]
        assert small == [], f"sequences that stop at 2^31 - 1 in {service.name}: {small}"
    finally:
        await migrated.database.dispose()


@needs_postgres
@pytest.mark.parametrize("service", SERVICES, ids=IDS)
async def test_migrations_and_models_agree_on_postgresql(service: Service, tmp_path: Path,
                                                         scratch_prefix: str) -> None:
    """Alembic's autogenerate finds nothing to change: the hand-written revisions built what the models say."""
    migrated = await _migrated(service, tmp_path, scratch_prefix)
    try:
        assert migrated.database.engine is not None
        async with migrated.database.engine.connect() as conn:
            diffs = await conn.run_sync(_differences, service)
        assert diffs == [], f"{service.name}: the migrations and the models differ: {diffs}"
    finally:
        await migrated.database.dispose()


@needs_postgres
async def test_a_schema_migrated_before_keeps_its_money_and_takes_amounts_past_2_31(
        tmp_path: Path, scratch_prefix: str) -> None:
    """An existing node schema (32-bit) upgraded in place: balances and postings kept, the sequences go on from
    where they were, and a balance below -2^31 fen fits afterwards."""
    node = SERVICES[0]
    migrated = await _migrated(node, tmp_path, scratch_prefix, to=node.previous_head)
    try:
        engine = migrated.database.engine
        assert engine is not None
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO accounts (account_id, kind, balance_fen, opened_at) VALUES "
                "('SYS:FUNDING', 'SYSTEM', -2147483000, now()), ('PA:1', 'PA', 2147483000, now())"))
            entry_id = (await conn.execute(sa.text(
                "INSERT INTO ledger_entries (kind, ref, posted_at) VALUES ('OPENING_BALANCE', '1', now()) "
                "RETURNING entry_id"))).scalar_one()
            await conn.execute(sa.text(
                "INSERT INTO ledger_lines (entry_id, account_id, amount_fen) VALUES "
                "(:e, 'SYS:FUNDING', -2147483000), (:e, 'PA:1', 2147483000)"), {"e": entry_id})
        await upgrade_to(migrated.database, node.migrations, "head")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "UPDATE accounts SET balance_fen = balance_fen + :delta WHERE account_id = 'PA:1'"),
                {"delta": 3_000_000_000})
            await conn.execute(sa.text(
                "UPDATE accounts SET balance_fen = balance_fen - :delta WHERE account_id = 'SYS:FUNDING'"),
                {"delta": 3_000_000_000})
            next_entry = (await conn.execute(sa.text(
                "INSERT INTO ledger_entries (kind, ref, posted_at) VALUES ('MONTHLY_CREDIT', '1', now()) "
                "RETURNING entry_id"))).scalar_one()
            balances: dict[str, int] = {row.account_id: row.balance_fen for row in await conn.execute(
                sa.text("SELECT account_id, balance_fen FROM accounts"))}
        assert next_entry == entry_id + 1
        assert balances == {"SYS:FUNDING": -5_147_483_000, "PA:1": 5_147_483_000}
    finally:
        await migrated.database.dispose()
