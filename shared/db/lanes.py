"""PostgreSQL connections kept checked out of SQLAlchemy's pool, one per unit of work or read view at a time."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Lane:
    """A PostgreSQL connection checked out of SQLAlchemy's pool for good, with its asyncpg adapter at hand."""

    __slots__ = ("adapted", "connection")

    def __init__(self, connection: AsyncConnection, adapted: Any) -> None:
        self.connection = connection
        self.adapted = adapted


class Lanes:
    """PostgreSQL connections for units of work and read views, kept checked out of SQLAlchemy's pool: one is
    taken per unit of work or read view and given back after it, and its transaction begins (at its first
    statement) and ends straight on asyncpg.

    Kept by hand for speed. Through SQLAlchemy's pool, a unit of work's checkout, begin, commit and return each
    ran through a greenlet: measured here with uvloop, a unit of work with one statement cost 420 µs of client
    CPU, 250 µs on a lane, 200 µs on asyncpg alone. SQLAlchemy still runs whatever is not `Prepared` on the same
    connection, and then ends the transaction itself. A lane whose connection broke is invalidated, not kept.
    Fenced by tests/integration/test_lanes.py. At most `size` lanes; a taker waits for a free one at most
    `timeout_s`, then fails as SQLAlchemy's pool would (sqlalchemy.exc.TimeoutError)."""

    def __init__(self, engine: AsyncEngine, size: int, timeout_s: float = 30.0) -> None:
        self._engine = engine
        self._idle: list[Lane] = []
        self._free = asyncio.Semaphore(size)
        self._timeout_s = timeout_s

    async def take(self) -> Lane:
        if self._free.locked():
            try:
                await asyncio.wait_for(self._free.acquire(), self._timeout_s)
            except TimeoutError:
                raise sa.exc.TimeoutError(f"no database connection free within {self._timeout_s:g} s") from None
        else:
            await self._free.acquire()  # free: returns without suspending (wait_for would start a task)
        try:
            if self._idle:
                return self._idle.pop()  # the most recently used: its backend's caches are warm
            connection = await self._engine.connect()
            try:
                adapted = (await connection.get_raw_connection()).dbapi_connection
            except BaseException:
                await connection.close()
                raise
            return Lane(connection, adapted)
        except BaseException:
            self._free.release()
            raise

    async def give_back(self, lane: Lane, *, usable: bool) -> None:
        try:
            if usable and not lane.connection.invalidated and not lane.adapted._connection.is_closed():
                self._idle.append(lane)
                return
            with contextlib.suppress(Exception):
                await lane.connection.invalidate()
            with contextlib.suppress(Exception):
                await lane.connection.close()
        finally:
            self._free.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for lane in idle:
            with contextlib.suppress(Exception):
                await lane.connection.close()
