"""shared/db/statements.py `ByKeys`: the rows whose unique key is one of a list, one statement for any list, on a real
SQLite file and on PostgreSQL (when YIBAO_TEST_POSTGRES_URL is set); and on PostgreSQL the plan it would cache on
a fresh instance reads the table by its key (issue 9)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.national_hub.bootstrap import MIGRATIONS
from shared.db import ByKeys, Database, ReadView, UnitOfWork
from tests.support.inprocess import scratch_database
from tests.support.plans import generic_plan_scans

SCRATCH = sa.MetaData()
PEOPLE = sa.Table("bk_test_people", SCRATCH, sa.Column("psn_no", sa.String(32), primary_key=True),
                  sa.Column("name", sa.Text(), nullable=False),
                  sa.Column("amount_fen", sa.BigInteger(), nullable=False))
BY_PSN_NO = ByKeys(PEOPLE.c.psn_no, PEOPLE.c.psn_no, PEOPLE.c.amount_fen)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with scratch_database(request.param, tmp_path, "hub", MIGRATIONS, SCRATCH,
                                f"tbk{secrets.token_hex(3)}_") as database:
        yield database


async def test_the_rows_of_the_keys_listed_whatever_the_lists_length(db: Database) -> None:
    async with UnitOfWork(db) as uow:
        await uow.execute(sa.insert(PEOPLE), [{"psn_no": f"P{i:05d}", "name": f"n{i}", "amount_fen": i * 2**33}
                                              for i in range(1200)])
        await uow.commit()
    async with UnitOfWork(db) as uow:
        assert await BY_PSN_NO.rows(uow, []) == []
        assert [tuple(row) for row in await BY_PSN_NO.rows(uow, ["P00007", "nobody", "P00007"])] == [
            ("P00007", 7 * 2**33)]  # a key listed twice answers once; an unknown key answers nothing
        many = [f"P{i:05d}" for i in range(0, 1300, 3)]  # longer than any chunk an IN list was cut into
        found = {row.psn_no: row.amount_fen for row in await BY_PSN_NO.rows(uow, many)}
        assert found == {f"P{i:05d}": i * 2**33 for i in range(0, 1200, 3)}
    async with ReadView(db) as view:  # in a read view too
        assert [row.amount_fen for row in await BY_PSN_NO.rows(view, ["P01199"])] == [1199 * 2**33]


async def test_a_new_table_is_read_by_its_key(db: Database) -> None:
    """The generic plan PostgreSQL would cache, made while the table is empty and not analyzed (a fresh instance),
    looks each key up in the key's index: a join or `= ANY(...)` plan stayed a sequential scan of the whole
    table for every call until autovacuum's next ANALYZE."""
    if db.inline:
        pytest.skip("SQLite plans each statement as it runs")
    scans = await generic_plan_scans(db, BY_PSN_NO._postgresql.statement, {"keys": ["P00001", "P00002"]},
                                     PEOPLE.name)
    assert scans and "Seq Scan" not in scans, scans
