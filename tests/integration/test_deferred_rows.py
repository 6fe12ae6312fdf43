"""A unit of work's deferred rows (`UnitOfWork.defer`): written as it commits, on SQLite one executemany per
statement, on PostgreSQL all of them in one statement (`shared/db.py` `_DeferredRows`: each statement's rows
from `unnest` of one array per column, several tables as data-modifying CTEs). Both ways must land exactly the
rows deferred, with their values and types, in the order deferred (the outbox's seq order is the order a
consumer sees), or nothing at all when one of them breaks a constraint. Run on SQLite always and on PostgreSQL
when YIBAO_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from services.province_node.adapters.tables import SystemAccountDelta
from shared.audit import AuditPending
from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.messaging_tables import OutboxMessage
from shared.tables import table

OUTBOX, DELTAS, PENDING = table(OutboxMessage), table(SystemAccountDelta), table(AuditPending)
NEW_MESSAGE, NEW_DELTA, NEW_PENDING = Prepared(sa.insert(OUTBOX)), Prepared(sa.insert(DELTAS)), Prepared(
    sa.insert(PENDING))
AT = datetime(2026, 12, 2, 1, 30, 15, 123456, tzinfo=UTC)
ABOVE_32_BITS_FEN = 3_000_000_000_00



def _message(number: int) -> dict[str, Any]:
    # ids whose text order is not the order deferred: the seq order must follow the deferral
    return {"message_id": f"m{(number * 7919) % 1000:03d}-{number}", "topic": "t", "key": f"k{number % 3}",
            "payload": bytes([number % 256, 0, 255]), "created_at": AT + timedelta(microseconds=number)}


async def _outbox(db: Database) -> list[Any]:
    async with ReadView(db) as view:
        return list((await view.execute(sa.select(OUTBOX).order_by(OUTBOX.c.seq))).all())


async def test_rows_of_several_tables_land_as_deferred_in_order(node_database: Database) -> None:
    messages = [_message(number) for number in range(30)]
    async with UnitOfWork(node_database) as uow:
        for message in messages:
            uow.defer(NEW_MESSAGE, message)
        uow.defer(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": ABOVE_32_BITS_FEN})
        uow.defer(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": -ABOVE_32_BITS_FEN - 1})
        uow.defer(NEW_PENDING, {"kind": "POSTING", "ref": "r1", "at": AT.isoformat(), "data": '{"a":"医保"}'})
        await uow.commit()
    landed = await _outbox(node_database)
    assert [row.message_id for row in landed] == [message["message_id"] for message in messages]
    assert [(row.topic, row.key, bytes(row.payload), row.created_at) for row in landed] == [
        (m["topic"], m["key"], m["payload"], m["created_at"]) for m in messages]
    async with ReadView(node_database) as view:
        deltas = (await view.execute(sa.select(DELTAS.c.account_id, DELTAS.c.delta_fen).order_by(DELTAS.c.id))).all()
        pending = (await view.execute(sa.select(PENDING.c.kind, PENDING.c.ref, PENDING.c.data))).all()
    assert [tuple(row) for row in deltas] == [("SYS:POOL", ABOVE_32_BITS_FEN), ("SYS:POOL", -ABOVE_32_BITS_FEN - 1)]
    assert [tuple(row) for row in pending] == [("POSTING", "r1", '{"a":"医保"}')]


async def test_a_broken_constraint_leaves_nothing_of_the_transaction(node_database: Database) -> None:
    async with UnitOfWork(node_database) as uow:
        uow.defer(NEW_MESSAGE, _message(1))
        await uow.commit()
    with pytest.raises(sa.exc.IntegrityError):
        async with UnitOfWork(node_database) as uow:
            await uow.execute(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": 5})  # not deferred
            uow.defer(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": 7})
            uow.defer(NEW_MESSAGE, _message(2))
            uow.defer(NEW_MESSAGE, _message(1))  # its message_id is taken
            await uow.commit()
    assert [row.message_id for row in await _outbox(node_database)] == [_message(1)["message_id"]]
    async with ReadView(node_database) as view:
        assert (await view.execute(sa.select(sa.func.count()).select_from(DELTAS))).scalar_one() == 0


async def test_two_column_sets_for_one_table_keep_their_order(node_database: Database) -> None:
    """Two batches into one table are not CTEs of one statement (those run in no set order)."""
    async with UnitOfWork(node_database) as uow:
        uow.defer(NEW_DELTA, {"account_id": "SYS:A", "delta_fen": 1})
        uow.defer(NEW_DELTA, {"id": 1000, "account_id": "SYS:B", "delta_fen": 2})
        uow.defer(NEW_DELTA, {"account_id": "SYS:C", "delta_fen": 3})
        uow.defer(NEW_MESSAGE, _message(5))
        await uow.commit()
    async with ReadView(node_database) as view:
        rows = (await view.execute(sa.select(DELTAS.c.id, DELTAS.c.account_id).order_by(DELTAS.c.account_id))).all()
    assert [row.account_id for row in rows] == ["SYS:A", "SYS:B", "SYS:C"]
    assert rows[1].id == 1000 and rows[0].id < rows[2].id
    assert len(await _outbox(node_database)) == 1


async def test_postgresql_writes_them_in_one_round_trip(node_database: Database,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if node_database.inline:
        pytest.skip("SQLite writes each statement's rows with one executemany")
    sent: list[str] = []
    run = UnitOfWork._run_on_asyncpg

    async def counting(self: UnitOfWork, prepared: Prepared, params: Any, **kwargs: Any) -> Any:
        sent.append(type(prepared.statement).__name__)
        return await run(self, prepared, params, **kwargs)

    monkeypatch.setattr(UnitOfWork, "_run_on_asyncpg", counting)
    async with UnitOfWork(node_database) as uow:
        for number in range(3):
            uow.defer(NEW_MESSAGE, _message(number))
        uow.defer(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": 9})
        uow.defer(NEW_PENDING, {"kind": "K", "ref": "r", "at": AT.isoformat(), "data": "{}"})
        await uow.commit()
    assert sent == ["Select"]  # WITH d0 AS (INSERT ...), d1 AS (...), d2 AS (...) SELECT 1
    assert len(await _outbox(node_database)) == 3
