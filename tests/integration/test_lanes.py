"""PostgreSQL lanes (`shared/db/lanes.py`): connections kept checked out of SQLAlchemy's pool, whose units of
work and read views begin and end their transactions straight on asyncpg. Kept by hand for speed, so fenced
here: every way a session ends must leave its lane outside any transaction and in its default isolation (or
give it up), a broken connection must not be handed out again, and a taker waits for a free lane at most its
timeout. PostgreSQL only (YIBAO_TEST_POSTGRES_URL); SQLite runs inline and has no lanes."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Database, Prepared, ReadView, UnitOfWork, drop_schemas
from shared.db.engine import _asyncpg_connect_args
from shared.db.lanes import Lanes
from tests.support.inprocess import database_url

METADATA = sa.MetaData()
ROWS = sa.Table("lane_rows", METADATA, sa.Column("id", sa.BigInteger, primary_key=True),
                sa.Column("amount_fen", sa.BigInteger, nullable=False))
NEW_ROW = Prepared(sa.insert(ROWS))
AMOUNT_OF = Prepared(sa.select(ROWS.c.amount_fen).where(ROWS.c.id == sa.bindparam("b_id")))
BACKEND_PID = Prepared(sa.select(sa.func.pg_backend_pid()))


@pytest.fixture
async def lanes_db() -> AsyncIterator[Database]:
    """A database of two lanes on a schema of its own (dropped afterwards), with one table."""
    url = database_url("postgresql")
    schema = f"l{secrets.token_hex(3)}_lanes"
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    await admin.dispose()
    engine = create_async_engine(url, pool_size=4, max_overflow=0, connect_args=_asyncpg_connect_args(url, schema))
    async with engine.begin() as conn:
        await conn.run_sync(METADATA.create_all)
    db = Database(engine=engine, schema=schema, lanes=2)
    try:
        yield db
    finally:
        await db.dispose()
        await drop_schemas(url, [schema])


async def _amount(db: Database, row_id: int) -> int | None:
    async with ReadView(db) as view:
        value = (await view.execute(AMOUNT_OF, {"b_id": row_id})).scalar()
    return None if value is None else int(value)


def _lanes(db: Database) -> Lanes:
    assert db.lanes is not None
    return db.lanes


async def _assert_clean(db: Database) -> None:
    """Every idle lane outside a transaction, in SQLAlchemy's eyes and asyncpg's, and not in autocommit."""
    for lane in _lanes(db)._idle:
        assert not lane.connection.in_transaction()
        assert lane.adapted._transaction is None
        assert not lane.adapted.autocommit
        assert not lane.adapted._connection.is_in_transaction()


async def test_prepared_only_unit_of_work_commits_and_rolls_back_on_asyncpg(lanes_db: Database) -> None:
    async with UnitOfWork(lanes_db) as uow:
        await uow.execute(NEW_ROW, {"id": 1, "amount_fen": 3_000_000_000_00})
        await uow.commit()
    async with UnitOfWork(lanes_db) as uow:
        await uow.execute(NEW_ROW, {"id": 2, "amount_fen": 5})
        # left without commit: rolled back
    assert await _amount(lanes_db, 1) == 3_000_000_000_00
    assert await _amount(lanes_db, 2) is None
    await _assert_clean(lanes_db)
    assert len(_lanes(lanes_db)._idle) == 1  # one lane did it all, one after the other


async def test_sqlalchemy_statements_join_the_lanes_transaction(lanes_db: Database) -> None:
    async with UnitOfWork(lanes_db) as uow:
        await uow.execute(NEW_ROW, {"id": 1, "amount_fen": 10})  # begins on asyncpg
        await uow.execute(sa.update(ROWS).where(ROWS.c.id == 1).values(amount_fen=ROWS.c.amount_fen + 1))
        async with uow.savepoint():
            await uow.execute(NEW_ROW, {"id": 2, "amount_fen": 20})
        with pytest.raises(RuntimeError):
            async with uow.savepoint():
                await uow.execute(NEW_ROW, {"id": 3, "amount_fen": 30})
                raise RuntimeError("refused: this part only")
        await uow.commit()
    async with UnitOfWork(lanes_db) as uow:
        await uow.execute(sa.insert(ROWS).values(id=4, amount_fen=40))  # SQLAlchemy first, then nothing committed
        await uow.execute(NEW_ROW, {"id": 5, "amount_fen": 50})
    assert [await _amount(lanes_db, row_id) for row_id in (1, 2, 3, 4, 5)] == [11, 20, None, None, None]
    await _assert_clean(lanes_db)


async def test_a_read_views_autocommit_ends_with_it(lanes_db: Database) -> None:
    async with ReadView(lanes_db) as view:
        await view.execute(sa.select(sa.func.count()).select_from(ROWS))  # SQLAlchemy's, in autocommit
    await _assert_clean(lanes_db)
    async with UnitOfWork(lanes_db) as uow:  # the same lane: its unit of work must be a transaction again
        await uow.execute(sa.insert(ROWS).values(id=1, amount_fen=1))
    assert await _amount(lanes_db, 1) is None
    async with ReadView(lanes_db) as view:  # one snapshot for its reads: a transaction, rolled back at the end
        await view.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        await view.execute(AMOUNT_OF, {"b_id": 1})
    await _assert_clean(lanes_db)


async def test_a_failed_commit_gives_the_lane_back_once(lanes_db: Database) -> None:
    async with UnitOfWork(lanes_db) as uow:
        await uow.execute(NEW_ROW, {"id": 1, "amount_fen": 1})
        await uow.commit()
    with pytest.raises(sa.exc.IntegrityError):
        async with UnitOfWork(lanes_db) as uow:
            uow.defer(NEW_ROW, {"id": 1, "amount_fen": 2})  # written at commit: a duplicate key there
            await uow.commit()
    assert _lanes(lanes_db)._free._value == 2  # both lanes free: none given back twice, none lost
    await _assert_clean(lanes_db)
    assert await _amount(lanes_db, 1) == 1


async def test_a_broken_connection_is_not_handed_out_again(lanes_db: Database) -> None:
    async with ReadView(lanes_db) as view:
        pid = (await view.execute(BACKEND_PID)).scalar_one()
    admin = create_async_engine(database_url("postgresql"))
    async with admin.connect() as conn:  # the server ends the idle lane's backend (a restart, an operator)
        await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await admin.dispose()
    with pytest.raises(sa.exc.DBAPIError):
        async with UnitOfWork(lanes_db) as uow:
            await uow.execute(BACKEND_PID)
    async with UnitOfWork(lanes_db) as uow:
        assert (await uow.execute(BACKEND_PID)).scalar_one() != pid
        await uow.execute(NEW_ROW, {"id": 1, "amount_fen": 1})
        await uow.commit()
    assert await _amount(lanes_db, 1) == 1
    assert _lanes(lanes_db)._free._value == 2


async def test_a_taker_waits_for_a_free_lane_then_times_out(lanes_db: Database) -> None:
    lanes = _lanes(lanes_db)
    lanes._timeout_s = 0.2
    first, second = await lanes.take(), await lanes.take()
    waiting = asyncio.create_task(lanes.take())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await lanes.give_back(first, usable=True)
    third = await waiting
    assert third is first  # the lane given back, not a new connection
    with pytest.raises(sa.exc.TimeoutError):
        await lanes.take()
    await lanes.give_back(second, usable=True)
    await lanes.give_back(third, usable=True)
    assert lanes._free._value == 2
