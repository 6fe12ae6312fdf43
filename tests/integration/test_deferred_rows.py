"""A unit of work's deferred rows (`UnitOfWork.defer`): written as it commits, on SQLite one executemany per
statement, on PostgreSQL all of them in one statement (`shared/db/combined.py` `DeferredRows`: each statement's rows
from `unnest` of one array per column, several tables as data-modifying CTEs). Both ways must land exactly the
rows deferred, with their values and types, in the order deferred (the outbox's seq order is the order a
consumer sees), or nothing at all when one of them breaks a constraint. Run on SQLite always and on PostgreSQL
when YIBAO_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from services.province_node.adapters.tables import Account, SystemAccountDelta
from shared.audit import AuditPending
from shared.db import Database, Prepared, PreparedInsertOrNothing, ReadView, UnitOfWork
from shared.messaging_tables import InboxMessage, OutboxMessage
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


def _statements_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the statements units of work send to asyncpg from now on, in order."""
    sent: list[str] = []
    run = UnitOfWork._run_on_asyncpg

    async def counting(self: UnitOfWork, prepared: Prepared, params: Any, **kwargs: Any) -> Any:
        sent.append(type(prepared.statement).__name__)
        return await run(self, prepared, params, **kwargs)

    monkeypatch.setattr(UnitOfWork, "_run_on_asyncpg", counting)
    return sent


async def test_postgresql_writes_them_in_one_round_trip(node_database: Database,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if node_database.inline:
        pytest.skip("SQLite writes each statement's rows with one executemany")
    sent = _statements_sent(monkeypatch)
    async with UnitOfWork(node_database) as uow:
        for number in range(3):
            uow.defer(NEW_MESSAGE, _message(number))
        uow.defer(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": 9})
        uow.defer(NEW_PENDING, {"kind": "K", "ref": "r", "at": AT.isoformat(), "data": "{}"})
        await uow.commit()
    assert sent == ["Select"]  # WITH d0 AS (INSERT ...), d1 AS (...), d2 AS (...) SELECT 1
    assert len(await _outbox(node_database)) == 3


# ------------------------------------------------------------------------- a commit's condition and guards

ACCOUNTS, INBOX = table(Account), table(InboxMessage)
# The condition: a balance set only where it still is what was read (`b_` binds, as the gateway's answer).
SET_IF_UNCHANGED = Prepared(sa.update(ACCOUNTS).where(ACCOUNTS.c.account_id == sa.bindparam("b_account_id"),
                                                      ACCOUNTS.c.balance_fen == sa.bindparam("b_read_fen"),
                                                      ACCOUNTS.c.kind == "PA"))
NEW_INBOX_OR_NOTHING = PreparedInsertOrNothing(INBOX, "message_id")


def _set(read_fen: int, balance_fen: int) -> tuple[Prepared, dict[str, Any]]:
    return SET_IF_UNCHANGED, {"b_account_id": "PA:1", "b_read_fen": read_fen, "balance_fen": balance_fen}


def _inbox_row(message_id: str) -> dict[str, Any]:
    return {"message_id": message_id, "message_type": "T", "received_at": AT}


async def _state(db: Database) -> tuple[int, list[str], list[str]]:
    """The account's balance, the inbox's ids, the outbox's ids."""
    async with ReadView(db) as view:
        balance = (await view.execute(sa.select(ACCOUNTS.c.balance_fen).where(
            ACCOUNTS.c.account_id == "PA:1"))).scalar_one()
        inbox = list((await view.execute(sa.select(INBOX.c.message_id).order_by(INBOX.c.message_id))).scalars())
    return int(balance), inbox, [row.message_id for row in await _outbox(db)]


@pytest.fixture
async def with_account(node_database: Database) -> Database:
    async with UnitOfWork(node_database) as uow:
        await uow.execute(sa.insert(ACCOUNTS), {"account_id": "PA:1", "kind": "PA", "balance_fen": 100,
                                                "opened_at": AT})
        uow.defer(NEW_INBOX_OR_NOTHING.on(uow), _inbox_row("taken"))  # a guard's key that exists
        await uow.commit()
    return node_database


async def _gated_commit(db: Database, read_fen: int, guard_key: str, *, statement_first: bool = False) -> bool:
    async with UnitOfWork(db) as uow:
        if statement_first:
            await uow.execute(NEW_DELTA, {"account_id": "SYS:POOL", "delta_fen": 1})
        uow.guard(NEW_INBOX_OR_NOTHING, _inbox_row(guard_key))
        uow.defer(NEW_MESSAGE, _message(1))
        uow.defer(NEW_MESSAGE, _message(2))
        uow.defer(NEW_PENDING, {"kind": "K", "ref": guard_key, "at": AT.isoformat(), "data": "{}"})
        return await uow.commit(condition=_set(read_fen, ABOVE_32_BITS_FEN))


@pytest.mark.parametrize("statement_first", [False, True], ids=["alone", "after-a-statement"])
async def test_a_commit_with_a_condition_and_a_guard_writes_what_they_allow(
        with_account: Database, statement_first: bool) -> None:
    db = with_account
    # The condition changes no row (the balance is not what was read): nothing of the transaction stays.
    assert await _gated_commit(db, 99, "new", statement_first=statement_first) is False
    assert await _state(db) == (100, ["taken"], [])
    async with ReadView(db) as view:
        assert (await view.execute(sa.select(sa.func.count()).select_from(DELTAS))).scalar_one() == 0
    # The condition holds, the guard's key exists: the condition's change alone (and what ran before).
    assert await _gated_commit(db, 100, "taken", statement_first=statement_first) is True
    assert await _state(db) == (ABOVE_32_BITS_FEN, ["taken"], [])
    # Both hold: everything, the deferred rows in the order deferred.
    assert await _gated_commit(db, ABOVE_32_BITS_FEN, "new", statement_first=statement_first) is True
    assert await _state(db) == (ABOVE_32_BITS_FEN, ["new", "taken"],
                                [_message(1)["message_id"], _message(2)["message_id"]])
    async with ReadView(db) as view:
        assert list((await view.execute(sa.select(PENDING.c.ref))).scalars()) == ["new"]
        assert (await view.execute(sa.select(sa.func.count()).select_from(DELTAS))).scalar_one() == (
            2 if statement_first else 0)


async def test_a_gated_commit_with_nothing_before_it_is_one_statement_on_postgresql(
        with_account: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    if with_account.inline:
        pytest.skip("SQLite runs the condition, the guard and each table's rows as statements of its savepoint")
    sent = _statements_sent(monkeypatch)
    assert await _gated_commit(with_account, 100, "new") is True
    assert sent == ["Select"]  # WITH c AS (UPDATE ...), g0 AS (INSERT ...), d0 AS (...), d1 AS (...) SELECT
    assert await _state(with_account) == (ABOVE_32_BITS_FEN, ["new", "taken"],
                                          [_message(1)["message_id"], _message(2)["message_id"]])


async def test_a_gated_commit_whose_rows_break_a_key_leaves_nothing(with_account: Database) -> None:
    assert await _gated_commit(with_account, 100, "new") is True
    with pytest.raises(sa.exc.IntegrityError):  # the outbox's message ids are taken
        await _gated_commit(with_account, ABOVE_32_BITS_FEN, "newer")
    assert await _state(with_account) == (ABOVE_32_BITS_FEN, ["new", "taken"],
                                          [_message(1)["message_id"], _message(2)["message_id"]])


async def test_a_gated_commit_whose_rows_no_cte_can_order_runs_them_in_its_transaction(
        with_account: Database) -> None:
    """Two column sets for one table (see above) cannot be CTEs of the one statement: the same commit then runs
    as a transaction of statements, with the same outcome."""

    async def commit(read_fen: int, guard_key: str, delta_id: int) -> bool:
        async with UnitOfWork(with_account) as uow:
            uow.guard(NEW_INBOX_OR_NOTHING, _inbox_row(guard_key))
            uow.defer(NEW_DELTA, {"account_id": "SYS:A", "delta_fen": 1})
            uow.defer(NEW_DELTA, {"id": delta_id, "account_id": "SYS:B", "delta_fen": 2})
            return await uow.commit(condition=_set(read_fen, ABOVE_32_BITS_FEN))

    async def deltas() -> int:
        async with ReadView(with_account) as view:
            return int((await view.execute(sa.select(sa.func.count()).select_from(DELTAS))).scalar_one())

    assert await commit(100, "taken", 1000) is True  # the condition holds, the guard's key exists: no rows
    assert await _state(with_account) == (ABOVE_32_BITS_FEN, ["taken"], []) and await deltas() == 0
    assert await commit(100, "new", 1001) is False  # the balance is no longer what was read: nothing
    assert await _state(with_account) == (ABOVE_32_BITS_FEN, ["taken"], []) and await deltas() == 0
    assert await commit(ABOVE_32_BITS_FEN, "new", 1002) is True  # both hold: everything
    assert await _state(with_account) == (ABOVE_32_BITS_FEN, ["new", "taken"], []) and await deltas() == 2
