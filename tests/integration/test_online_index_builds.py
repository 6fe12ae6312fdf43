"""A revision that indexes a large table in use does not stop its writers (shared/migrations.py
`create_index_online`), on PostgreSQL.

A plain CREATE INDEX waits for the transactions writing the table, and every writer that comes after it waits
for the build: on a table of tens of millions of rows, every replica still running stops for minutes. Built
CONCURRENTLY, the index waits for those transactions too, but writers go on. The revision used here is the
province node's 18a0000000a1 (`transfers_out`: one index on the giver and day in place of one on each); the
services' migrations run as at start (`Database.migrate`), from the revision before it, with rows in the table."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.province_node.bootstrap import MIGRATIONS
from services.province_node.config import NodeSettings
from shared.db import Database, drop_schemas, open_database
from tests.support.migrations import upgrade_to

POSTGRES_URL = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="YIBAO_TEST_POSTGRES_URL not set")

BEFORE = "17a0000000a1"  # the revision before the one that builds ix_transfers_out_giver_day
NEW_INDEX = "ix_transfers_out_giver_day"
OLD_INDEXES = {"ix_transfers_out_giver_psn_no", "ix_transfers_out_accepted_day"}
INSTANCE = "node_640000"


async def _open(home: Path, prefix: str) -> Database:
    settings = NodeSettings(province_admdvs="640000", home=home, database_url=POSTGRES_URL, db_schema_prefix=prefix)
    return await open_database(settings, INSTANCE)


@pytest.fixture
async def node_before(tmp_path: Path) -> AsyncIterator[Database]:
    """A province node's schema at the revision before, with one transfer in `transfers_out`."""
    prefix = f"tix_{secrets.token_hex(3)}_"
    database = await _open(tmp_path, prefix)
    await upgrade_to(database, MIGRATIONS, BEFORE, then=_insert_transfer("T-before"))
    try:
        yield database
    finally:
        await database.dispose()
        await drop_schemas(POSTGRES_URL, [database.schema])


@pytest.fixture
async def engine(node_before: Database) -> AsyncIterator[AsyncEngine]:
    """Connections of the test's own on the node's schema: the writers."""
    engine = create_async_engine(POSTGRES_URL, connect_args={
        "server_settings": {"search_path": node_before.schema}, "ssl": False})
    yield engine
    await engine.dispose()


def _insert_transfer(transfer_id: str) -> Any:
    return sa.text(
        "INSERT INTO transfers_out (transfer_id, binding_id, giver_psn_no, receiver_psn_no, receiver_admdvs, "
        "amount_fen, state, accepted_day, accepted_at) VALUES (:transfer_id, 'B1', 'P1', 'P2', '620000', 50000, "
        "'ACCEPTED', '2026-12-03', :accepted_at)").bindparams(transfer_id=transfer_id, accepted_at=datetime.now(UTC))


async def _indexes(conn: AsyncConnection, schema: str) -> dict[str, tuple[bool, str]]:
    """transfers_out's indexes: name → (valid, definition)."""
    rows = await conn.execute(sa.text(
        "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = :schema AND t.relname = 'transfers_out'"),
        {"schema": schema})
    return {name: (valid, definition) for name, valid, definition in rows}


async def _revision(conn: AsyncConnection) -> str:
    return str((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar())


async def _index_build_waiting(conn: AsyncConnection, timeout_s: float = 30.0) -> None:
    """Until a backend's CREATE INDEX on transfers_out waits for a lock (for the open writer to end)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        waiting = (await conn.execute(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query ILIKE 'CREATE INDEX%ix_transfers_out_giver_day%'"))).scalar()
        await conn.rollback()
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no CREATE INDEX on transfers_out waited for the open writer")


async def test_writers_go_on_while_the_index_is_built(node_before: Database, engine: AsyncEngine) -> None:
    async with engine.connect() as open_writer, engine.connect() as later_writer:
        # A writer in the middle of its transaction when the migration starts: the build must wait for it.
        await open_writer.execute(_insert_transfer("T-open"))
        migration = asyncio.create_task(node_before.migrate(MIGRATIONS))
        try:
            await _index_build_waiting(later_writer)
            # A writer that comes after the build started. Behind a plain CREATE INDEX it would wait until the
            # open writer and the whole build are done; here it is not held up (lock_timeout fails it if it is).
            await later_writer.execute(sa.text("SET lock_timeout = '3s'"))
            await later_writer.execute(_insert_transfer("T-later"))
            await later_writer.commit()
            assert not migration.done()
            await open_writer.commit()
            await asyncio.wait_for(migration, 60)
        finally:
            if not migration.done():
                migration.cancel()
        indexes = await _indexes(later_writer, node_before.schema)
        assert indexes[NEW_INDEX][0], "the index was left invalid"
        assert "(giver_psn_no, accepted_day)" in indexes[NEW_INDEX][1]
        assert OLD_INDEXES.isdisjoint(indexes)
        count = (await later_writer.execute(sa.text("SELECT count(*) FROM transfers_out"))).scalar()
        assert count == 3
        assert await _revision(later_writer) != BEFORE


async def test_a_revision_that_died_half_way_runs_again(node_before: Database, engine: AsyncEngine) -> None:
    """A build that died leaves an index of the new name (invalid, or on other columns) and perhaps one old index
    already dropped, and its revision unrecorded: the next start runs the revision again and ends with the
    right index."""
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"CREATE INDEX {NEW_INDEX} ON transfers_out (receiver_psn_no)"))
        await conn.execute(sa.text("DROP INDEX ix_transfers_out_accepted_day"))

    await node_before.migrate(MIGRATIONS)

    async with engine.connect() as conn:
        indexes = await _indexes(conn, node_before.schema)
        assert indexes[NEW_INDEX][0]
        assert "(giver_psn_no, accepted_day)" in indexes[NEW_INDEX][1]
        assert OLD_INDEXES.isdisjoint(indexes)


async def test_replicas_starting_together_migrate_once(node_before: Database, tmp_path: Path) -> None:
    """Two replicas of the instance start at once: one migrates, the other waits for it and finds the schema at
    head (the lock is the connection's, asked for again and again, never waited for inside a statement that the
    build would wait for in turn)."""
    other = await _open(tmp_path, node_before.schema.removesuffix(INSTANCE))
    try:
        assert other.schema == node_before.schema
        await asyncio.wait_for(asyncio.gather(node_before.migrate(MIGRATIONS), other.migrate(MIGRATIONS)), 60)
    finally:
        await other.dispose()
    assert node_before.engine is not None
    async with node_before.engine.connect() as conn:
        indexes = await _indexes(conn, node_before.schema)
        assert indexes[NEW_INDEX][0] and OLD_INDEXES.isdisjoint(indexes)
