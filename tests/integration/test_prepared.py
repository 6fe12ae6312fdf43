"""`Prepared` statements run straight on the driver (sqlite3 in a SQLite unit of work, asyncpg in a PostgreSQL
one). The same statements must answer exactly what SQLAlchemy's own execution answers: rows with the same
values and types, row counts, and SQLAlchemy's IntegrityError for a duplicate key (callers and run_retrying
depend on it). Run on SQLite always and on PostgreSQL when YIBAO_TEST_POSTGRES_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.messaging_tables import OutboxMessage
from shared.tables import table

OUTBOX = table(OutboxMessage)
AT = datetime(2026, 12, 1, 8, 30, 15, 123456, tzinfo=UTC)

NEW = Prepared(sa.insert(OUTBOX))
NEW_RETURNING = Prepared(sa.insert(OUTBOX).returning(OUTBOX.c.seq, OUTBOX.c.created_at))
BY_ID = Prepared(sa.select(OUTBOX).where(OUTBOX.c.message_id == sa.bindparam("b_id")))
BY_TOPIC = Prepared(sa.select(OUTBOX.c.message_id, OUTBOX.c.payload).where(
    OUTBOX.c.topic == sa.bindparam("b_topic")).order_by(OUTBOX.c.message_id).limit(2))
RETOPIC = Prepared(sa.update(OUTBOX).where(OUTBOX.c.topic == sa.bindparam("b_topic")))
COUNT = Prepared(sa.select(sa.func.count()).select_from(OUTBOX))


def _row(message_id: str, topic: str = "t1") -> dict[str, object]:
    return {"message_id": message_id, "topic": topic, "key": "k", "payload": b"\x00\xffbytes", "created_at": AT}


async def test_prepared_statements_answer_as_sqlalchemy_does(node_database: Database) -> None:
    async with UnitOfWork(node_database) as uow:
        inserted = await uow.execute(NEW, _row("m1"))
        assert inserted.rowcount == 1
        returned = (await uow.execute(NEW_RETURNING, _row("m2"))).one()
        await uow.execute(NEW, [_row("m3", "t2"), _row("m4", "t2")])
        straight = (await uow.execute(BY_ID, {"b_id": "m1"})).one()
        listed = (await uow.execute(BY_TOPIC, {"b_topic": "t2"})).all()
        moved = await uow.execute(RETOPIC, {"b_topic": "t2", "topic": "t3"})
        counted = (await uow.execute(COUNT, {})).scalar_one()
        await uow.commit()
    async with ReadView(node_database) as view:  # SQLAlchemy's own execution of the same statements
        reference = (await view.execute(BY_ID.statement, {"b_id": "m1"})).one()
        reference_returned = (await view.execute(BY_ID.statement, {"b_id": "m2"})).one()
        reference_listed = (await view.execute(BY_TOPIC.statement, {"b_topic": "t3"})).all()
    assert tuple(straight) == tuple(reference)
    assert [type(value) for value in straight] == [type(value) for value in reference]
    assert straight.created_at == AT and straight.payload == b"\x00\xffbytes"
    assert (returned.seq, returned.created_at) == (reference_returned.seq, reference_returned.created_at)
    assert [tuple(row) for row in listed] == [tuple(row) for row in reference_listed]
    assert moved.rowcount == 2 and counted == 4


async def test_a_duplicate_key_is_sqlalchemys_integrity_error_and_rolls_back(node_database: Database) -> None:
    async with UnitOfWork(node_database) as uow:
        await uow.execute(NEW, _row("dup"))
        await uow.commit()
    with pytest.raises(sa.exc.IntegrityError):
        async with UnitOfWork(node_database) as uow:
            await uow.execute(NEW, _row("other"))
            await uow.execute(NEW, _row("dup"))
            await uow.commit()
    async with ReadView(node_database) as view:
        assert (await view.execute(COUNT.statement)).scalar_one() == 1  # "other" rolled back with it


async def test_prepared_work_is_committed_with_sqlalchemys_and_rolled_back_without_commit(
        node_database: Database) -> None:
    async with UnitOfWork(node_database) as uow:
        await uow.execute(NEW, _row("kept"))
        await uow.execute(sa.insert(OUTBOX).values(**_row("kept-too")))
        await uow.commit()
    async with UnitOfWork(node_database) as uow:
        await uow.execute(NEW, _row("dropped"))  # no commit: the unit of work rolls back
    async with ReadView(node_database) as view:
        ids = set((await view.execute(sa.select(OUTBOX.c.message_id))).scalars())
    assert ids == {"kept", "kept-too"}


def test_statements_whose_python_side_defaults_would_be_skipped_are_refused() -> None:
    metadata = sa.MetaData()
    table = sa.Table("t", metadata, sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("stamp", sa.String, default="now", onupdate="later"), sa.Column("v", sa.String))
    dialect = sa.create_engine("sqlite://").dialect
    with pytest.raises(ValueError, match="stamp"):
        Prepared(sa.insert(table)).plan(dialect, frozenset({"v"}))
    with pytest.raises(ValueError, match="stamp"):
        Prepared(sa.update(table).where(table.c.id == sa.bindparam("b_id"))).plan(dialect, frozenset({"b_id", "v"}))
    Prepared(sa.insert(table)).plan(dialect, frozenset({"v", "stamp"}))  # given explicitly: fine
