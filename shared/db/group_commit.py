"""SQLite's group commit: units of work that follow each other share one transaction and one fsync."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("yibao.db")


class GroupCommit:
    """Group commit for the inline SQLite path: units of work that follow each other while the database is
    busy share one transaction, each inside its own SAVEPOINT (so one refusal rolls back only itself), and
    one fsync makes the whole group durable. Nobody is answered before that fsync: a unit of work's exit
    waits for its group's commit. Under load this turns N fsyncs into one; alone, a unit commits at once."""

    MAX_GROUP = 256
    FLUSH_DELAY_S = 0.0  # one turn of the event loop
    LAZY_FLUSH_S = 0.05  # a group holding only units that do not wait (durable=False) commits by then

    def __init__(self, sync_engine: sa.Engine) -> None:
        self._engine = sync_engine
        self.session: sa.Connection | None = None
        self.members: list[asyncio.Future[None]] = []
        self.wanting_lock = 0  # units of work waiting for or holding the write lock
        self._flush: asyncio.Task[None] | None = None
        self.lazy = False  # the open group holds work of units that did not wait for its fsync
        self._lazy_flush: asyncio.Task[None] | None = None

    def open(self) -> sa.Connection:
        if self.session is None:
            self.session = self._engine.connect()
            self.session.begin()  # BEGIN now: the members' savepoints are issued on the driver directly
        return self.session

    def driver(self) -> Any:
        """The sqlite3 connection under the group's transaction. Each member's SAVEPOINT goes straight to it:
        through SQLAlchemy every savepoint had a new name and so a new compilation, 5% of a settle's CPU.
        One fixed name is enough, since members run one after another under the write lock; a savepoint
        a use case opens inside (`savepoint()`) nests within it as usual."""
        assert self.session is not None
        return self.session.connection.driver_connection

    def enlist(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.members.append(done)
        return done

    def after_member(self, write_lock: asyncio.Lock) -> None:
        """Called with the write lock held, as a unit of work leaves. A full group commits at once; otherwise,
        when nobody else is queued for the lock, a flush is scheduled a moment later rather than now, so
        that requests already on their way join this group and share its fsync."""
        if len(self.members) >= self.MAX_GROUP:
            self.commit()
        elif self.members and self.wanting_lock == 0 and self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._flush_after(self.FLUSH_DELAY_S, write_lock))
        if self.lazy and self._lazy_flush is None:
            self._lazy_flush = asyncio.get_running_loop().create_task(
                self._flush_after(self.LAZY_FLUSH_S, write_lock))

    async def _flush_after(self, delay_s: float, write_lock: asyncio.Lock) -> None:
        await asyncio.sleep(delay_s)
        async with write_lock:
            this = asyncio.current_task()
            if self._flush is this:
                self._flush = None
            if self._lazy_flush is this:
                self._lazy_flush = None
            try:
                self.commit()
            except Exception:
                log.exception("group commit failed; its members were told")

    def commit(self) -> None:
        """Called with the write lock held. (Committing from a worker thread, so that requests could queue up
        meanwhile, measured slower here: the thread hand-off costs more than the fsync it overlaps.)"""
        session, members = self.session, self.members
        self.session, self.members, self.lazy = None, [], False
        if session is None:
            return
        try:
            session.commit()
        except BaseException as exc:
            session.rollback()
            for member in members:
                if not member.done():
                    member.set_exception(exc)
            raise
        finally:
            session.close()
        for member in members:
            if not member.done():
                member.set_result(None)
