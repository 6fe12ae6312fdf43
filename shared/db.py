"""Database engines and the unit of work.

SQLite (default): one file per service instance, WAL, synchronous=FULL so that a commit is on disk before any
answer leaves. PostgreSQL (YIBAO_DATABASE_URL): one schema per service instance. Writes go through one
in-process lock: each service instance is a single process, so this serialises writers without SQLITE_BUSY
retries, and on PostgreSQL it keeps balance checks and postings race-free without row-lock choreography."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from shared.settings import ServiceSettings

_SCHEMA_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")


def schema_name(settings: ServiceSettings, instance: str) -> str:
    name = f"{settings.db_schema_prefix}{instance}".lower()
    if not _SCHEMA_SAFE.match(name):
        raise ValueError(f"unsafe schema name {name!r}")
    return name


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


async def create_engine(settings: ServiceSettings, instance: str) -> AsyncEngine:
    """The engine for one service instance (`hub`, `gateway`, `node_640000`), creating its schema if needed."""
    if not settings.database_url:
        path = Path(settings.home) / "db" / f"{instance}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=8, max_overflow=8)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    schema = schema_name(settings, instance)
    admin = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    finally:
        await admin.dispose()
    return create_async_engine(
        settings.database_url,
        pool_size=10,
        max_overflow=10,
        connect_args={"server_settings": {"search_path": schema}},
    )


async def drop_schemas(database_url: str, schemas: list[str]) -> None:
    """`yibao up --fresh` on PostgreSQL: the same wipe that deleting the SQLite files is."""
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            for schema in schemas:
                if not _SCHEMA_SAFE.match(schema):
                    raise ValueError(f"unsafe schema name {schema!r}")
                await conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await admin.dispose()


class Database:
    """An engine plus the write lock; hands out units of work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.write_lock = asyncio.Lock()
        self.after_commit_hooks: list[Callable[[], None]] = []

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False, autoflush=False)


class UnitOfWork:
    """One database transaction for one use case. Nothing is committed unless `commit()` is called;
    leaving the block without it rolls back, so a refused request changes nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.session: AsyncSession
        self._committed = False
        self.wrote_outbox = False

    async def __aenter__(self) -> UnitOfWork:
        await self._db.write_lock.acquire()
        self.session = self._db.session()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if not self._committed:
                await self.session.rollback()
            await self.session.close()
        finally:
            self._db.write_lock.release()
        if self._committed and self.wrote_outbox:
            for hook in self._db.after_commit_hooks:
                hook()

    async def commit(self) -> None:
        await self.session.commit()
        self._committed = True

    async def execute(self, statement: Any, params: Any = None) -> Any:
        return await self.session.execute(statement, params)


class ReadView:
    """A read-only session (no write lock): queries that change nothing."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.session: AsyncSession

    async def __aenter__(self) -> ReadView:
        self.session = self._db.session()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.session.close()

    async def execute(self, statement: Any) -> Any:
        return await self.session.execute(statement)
