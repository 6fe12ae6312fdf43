"""The unit of work on SQLite (shared/db/group_commit.py): units that queue up share one group commit, each inside
its own savepoint, so one refused unit rolls back alone while the others land, and a savepoint a use case opens
inside a unit nests within it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from shared.db import Database, ReadView, UnitOfWork
from shared.db.engine import _sqlite_begin, _sqlite_pragmas

METADATA = sa.MetaData()
NOTES = sa.Table("notes", METADATA, sa.Column("note_id", sa.Integer, primary_key=True),
                 sa.Column("text", sa.String(20), nullable=False))


class Refused(Exception):
    pass


async def _database(tmp_path: Path) -> Database:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'group.sqlite3'}")
    # The same pragmas and explicit BEGIN as open_database gives every service.
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    sa.event.listen(engine, "begin", _sqlite_begin)
    METADATA.create_all(engine)
    return Database(sync_engine=engine)


async def _write(db: Database, note_id: int, *, refuse: bool = False) -> None:
    async with UnitOfWork(db) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": note_id, "text": f"note {note_id}"})
        await asyncio.sleep(0)  # let the others queue behind the write lock: they join the same group
        if refuse:
            raise Refused()
        await uow.commit()


async def _ids(db: Database) -> list[int]:
    async with ReadView(db) as view:
        return list((await view.execute(sa.select(NOTES.c.note_id).order_by(NOTES.c.note_id))).scalars())


async def test_a_refused_unit_rolls_back_alone_within_its_group(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    results = await asyncio.gather(*(_write(db, n, refuse=n % 3 == 0) for n in range(1, 13)),
                                   return_exceptions=True)
    assert [isinstance(r, Refused) for r in results] == [n % 3 == 0 for n in range(1, 13)]
    assert await _ids(db) == [n for n in range(1, 13) if n % 3]
    await db.dispose()


async def test_a_unit_left_without_commit_changes_nothing_and_the_next_one_lands(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    async with UnitOfWork(db) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": 1, "text": "never"})
    await _write(db, 2)
    assert await _ids(db) == [2]
    await db.dispose()


async def test_a_savepoint_inside_a_unit_rolls_back_only_its_own_part(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    async with UnitOfWork(db) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": 1, "text": "kept"})
        with pytest.raises(Refused):
            async with uow.savepoint():
                await uow.execute(sa.insert(NOTES), {"note_id": 2, "text": "undone"})
                raise Refused()
        await uow.execute(sa.insert(NOTES), {"note_id": 3, "text": "kept"})
        await uow.commit()
    assert await _ids(db) == [1, 3]
    await db.dispose()


async def test_a_unit_that_does_not_wait_lands_with_the_next_group_or_soon_after(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    async with UnitOfWork(db, durable=False) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": 1, "text": "pending"})
        await uow.commit()
    async with UnitOfWork(db) as uow:  # the same group: it sees the pending note already
        assert (await uow.execute(sa.select(NOTES.c.note_id))).scalars().all() == [1]
        await uow.execute(sa.insert(NOTES), {"note_id": 2, "text": "answer"})
        await uow.commit()
    assert await _ids(db) == [1, 2]  # one fsync made both durable

    async with UnitOfWork(db, durable=False) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": 3, "text": "alone"})
        await uow.commit()
    assert await _ids(db) == [1, 2]  # not committed yet: other connections do not see it
    # The delayed flush commits it by itself, within three of its delays: polled, not slept.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (db.group.LAZY_FLUSH_S * 3 if db.group else 0)
    while loop.time() < deadline:
        if await _ids(db) == [1, 2, 3]:
            break
        await asyncio.sleep(0.005)
    assert await _ids(db) == [1, 2, 3]

    async with UnitOfWork(db, durable=False) as uow:
        await uow.execute(sa.insert(NOTES), {"note_id": 4, "text": "at shutdown"})
        await uow.commit()
    await db.dispose()
    reopened = await _database(tmp_path)
    assert await _ids(reopened) == [1, 2, 3, 4]
    await reopened.dispose()
