"""Second replicas of in-process services on one PostgreSQL schema, and the pause between a task's read and its
write that the race tests (tests/integration/test_replica_races.py, test_hot_accounts.py) are built on: a
replica is a second `Database` opened on the same schema (no migrations), in a copy of the service's context,
which is what two processes of one service are as far as the database can tell."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.national_hub.service_layer.context import HubContext
from services.province_node.service_layer.context import NodeContext
from shared.db import Database, open_database
from tests.support.inprocess import InProcessFederation

# The longest the second task is given to reach the database (and block there, or finish) before the first
# goes on: a second task that blocks on nothing in PostgreSQL goes on when it gets there.
SECOND_TASK_HEAD_START_MAX_S = 5.0
# Backends of this database waiting for a lock, not counting the one asking.
_LOCK_WAITERS = sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
RACE_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------------------ replicas


@dataclasses.dataclass
class Replicas:
    """Second replicas of the federation's services: each a `Database` of its own on the same schema."""

    fed: InProcessFederation
    opened: list[Database] = dataclasses.field(default_factory=list)

    async def node(self, admdvs: str) -> NodeContext:
        ctx = self.fed.node(admdvs)
        db = await open_database(ctx.settings, ctx.settings.db_instance)
        self.opened.append(db)
        return dataclasses.replace(ctx, db=db)

    async def hub(self) -> HubContext:
        db = await open_database(self.fed.hub.settings, "hub")
        self.opened.append(db)
        return dataclasses.replace(self.fed.hub, db=db)

    async def database_of(self, ctx: NodeContext | HubContext) -> Database:
        instance = ctx.settings.db_instance if isinstance(ctx, NodeContext) else "hub"
        db = await open_database(ctx.settings, instance)
        self.opened.append(db)
        return db


# ------------------------------------------------------------------------------------------ the pause


class Gate:
    """Wraps async functions so that the FIRST call through any of them stops (before or after running the
    original) until `release` is set; every later call passes straight through."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    def wrap(self, original: Callable[..., Awaitable[Any]], *, after: bool = False) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            first = self.calls == 1
            if first and not after:
                await self._hold()
            result = await original(*args, **kwargs)
            if first and after:
                await self._hold()
            return result

        return gated

    async def _hold(self) -> None:
        self.reached.set()
        await self.release.wait()


async def race(gate: Gate, first: Coroutine[Any, Any, Any], second: Coroutine[Any, Any, Any]) -> list[Any]:
    """Start `first` until it stops at the gate, then `second`; after a head start, let `first` go on. The
    results (or exceptions) of both, in that order."""
    first_task = asyncio.ensure_future(first)
    reached = asyncio.ensure_future(gate.reached.wait())
    await asyncio.wait([first_task, reached], timeout=RACE_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    reached.cancel()
    if first_task.done():
        second.close()
        raise AssertionError(f"the first task ended without reaching the gate: {first_task.result()!r}")
    assert gate.reached.is_set(), "the first task never reached the gate"
    second_task = asyncio.ensure_future(second)
    await until_blocked_in_postgresql(1, second_task)
    gate.release.set()
    done = await asyncio.wait_for(asyncio.gather(first_task, second_task, return_exceptions=True), RACE_TIMEOUT_S)
    return list(done)


async def until_blocked_in_postgresql(waiters: int, *tasks: asyncio.Future[Any],
                                      statement: sa.TextClause = _LOCK_WAITERS) -> None:
    """Poll until `waiters` backends wait for a lock in PostgreSQL (`statement` counts them) or every task is
    done; at most SECOND_TASK_HEAD_START_MAX_S. (Another test's lock waits in the same database would end
    this early: the race then runs with less of a head start, as it would on a fast machine.)"""
    engine = create_async_engine(os.environ["YIBAO_TEST_POSTGRES_URL"])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SECOND_TASK_HEAD_START_MAX_S
    try:
        while loop.time() < deadline and not all(task.done() for task in tasks):
            async with engine.connect() as connection:
                if (await connection.execute(statement)).scalar_one() >= waiters:
                    return
            await asyncio.sleep(0.01)
    finally:
        await engine.dispose()
