"""Opening a service instance's database (a SQLite file, or a PostgreSQL schema shared by its replicas) and
`Database`, which hands out units of work and read views over it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.db.group_commit import GroupCommit
from shared.db.lanes import Lanes
from shared.db.sessions import ReadView
from shared.db.statements import Prepared
from shared.migrations import upgrade_on_connection
from shared.settings import ServiceSettings

_SCHEMA_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")
# PostgreSQL connections in a service's pool beside its lanes (Lanes): the outbox relay's listener, and the
# odd direct use of the engine (migrations, tests).
_POOL_BESIDE_LANES = 2
# Database.migrate on PostgreSQL: one replica of an instance migrates at a time (a session-level lock).
_TRY_MIGRATE_LOCK = sa.text("SELECT pg_try_advisory_lock(hashtext(:name))")
_MIGRATE_UNLOCK = sa.text("SELECT pg_advisory_unlock(hashtext(:name))")
_MIGRATE_LOCK_POLL_S = 0.05


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
    # SQLAlchemy emits BEGIN itself (below): pysqlite's implicit transactions break SAVEPOINTs.
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


async def open_database(settings: ServiceSettings, instance: str, migrations: Path | None = None) -> Database:
    """The database of one service instance (`hub`, `gateway`, `node_640000`), migrated to head when a
    migrations folder is given. PostgreSQL gets its schema created first."""
    if not settings.database_url:
        path = Path(settings.home) / "db" / f"{instance}.sqlite3"
        path.parent.mkdir(parents=True, exist_ok=True)
        sync_engine = sa.create_engine(f"sqlite:///{path}", pool_size=8, max_overflow=8)
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        event.listen(sync_engine, "begin", _sqlite_begin)
        database = Database(sync_engine=sync_engine)
    else:
        schema = schema_name(settings, instance)
        admin = create_async_engine(settings.database_url, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as conn:
                # Replicas start together: CREATE SCHEMA IF NOT EXISTS is not race-free on its own.
                await conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:name))"), {"name": f"{schema}.ddl"})
                await conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                await conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": f"{schema}.ddl"})
        finally:
            await admin.dispose()
        database = Database(schema=schema, lanes=settings.db_pool_size, engine=create_async_engine(
            settings.database_url,
            # A fixed pool: connections above it would be opened and closed per burst (a handshake each). The
            # lanes (Lanes) keep up to db_pool_size of them; the rest are the outbox relay's listener and the
            # odd direct use (migrations, tests).
            pool_size=settings.db_pool_size + _POOL_BESIDE_LANES,
            max_overflow=0,
            pool_pre_ping=False,
            connect_args=_asyncpg_connect_args(settings.database_url, schema),
        ))
    if migrations is not None:
        await database.migrate(migrations)
    return database


def _asyncpg_connect_args(database_url: str, schema: str) -> dict[str, Any]:
    """The schema on the search path; and no TLS to a server on this machine's loopback unless the URL asks
    for it (asyncpg's default "prefer" negotiates TLS when the server offers it, as Debian's does, and the
    encryption then cost more CPU per statement than the statement: measured here, a third of the gateway's)."""
    # application_name: pg_stat_activity names the service instance each backend works for (what waits on what).
    args: dict[str, Any] = {"server_settings": {"search_path": schema, "application_name": f"yibao {schema}"[:63]}}
    url = sa.engine.make_url(database_url)
    if url.host in ("127.0.0.1", "localhost", "::1") and "ssl" not in url.query and "sslmode" not in url.query:
        args["ssl"] = False
    return args


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
    """Hands out units of work and read views over one engine, plus the write lock.

    SQLite runs inline on the event loop through the synchronous driver: its statements take microseconds
    (the commit's fsync a fraction of a millisecond), while a thread hop per statement (aiosqlite) let
    other coroutines queue in front of a transaction holding the write lock; measured here, inline is
    several times faster under load. PostgreSQL's statements are network round trips, so they are awaited
    through asyncpg."""

    def __init__(self, *, engine: AsyncEngine | None = None, sync_engine: sa.Engine | None = None,
                 schema: str = "", lanes: int = ServiceSettings.model_fields["db_pool_size"].default) -> None:
        assert (engine is None) != (sync_engine is None), "exactly one engine"
        self.schema = schema  # PostgreSQL: names this instance's advisory locks (several share one server)
        self.engine = engine
        self.lanes = Lanes(engine, lanes) if engine is not None else None
        self.sync_engine = sync_engine
        self.write_lock = asyncio.Lock()
        self.after_commit_hooks: list[Callable[[], None]] = []
        self.group = GroupCommit(sync_engine) if sync_engine is not None else None

    @property
    def inline(self) -> bool:
        return self.sync_engine is not None

    def lanes_or_fail(self) -> Lanes:
        assert self.lanes is not None, "PostgreSQL only"
        return self.lanes

    def connect(self) -> sa.Connection:
        """A SQLite Core connection (no ORM session: every statement here is Core, and the ORM layer costs CPU).
        PostgreSQL's sessions take a lane instead (Lanes)."""
        assert self.sync_engine is not None, "SQLite only"
        return self.sync_engine.connect()

    async def ping(self) -> None:
        async with ReadView(self) as view:
            await view.execute(sa.text("SELECT 1"))

    async def migrate(self, script_location: Path) -> None:
        if self.sync_engine is not None:
            with self.sync_engine.begin() as connection:
                upgrade_on_connection(connection, script_location)
        else:
            assert self.engine is not None
            async with self.engine.connect() as conn:
                # Replicas of one instance start together; one migrates, the others then find it at head. The
                # lock is the connection's (each revision commits on its own, shared/migrations.py), and a waiter
                # asks again and again rather than waiting inside a statement: a waiting statement holds a
                # snapshot, and the leader's concurrent index build waits for every older snapshot to end.
                lock = {"name": f"{self.schema}.migrate"}
                while not (await conn.execute(_TRY_MIGRATE_LOCK, lock)).scalar():
                    await conn.rollback()
                    await asyncio.sleep(_MIGRATE_LOCK_POLL_S)
                await conn.commit()  # the session's lock stays; no transaction is open for the revisions
                try:
                    await conn.run_sync(upgrade_on_connection, script_location)
                    await conn.commit()
                finally:
                    await conn.rollback()
                    await conn.execute(_MIGRATE_UNLOCK, lock)
                    await conn.commit()

    async def execute_alone(self, statement: Prepared, params: dict[str, Any]) -> Any:
        """One statement as a transaction of its own (PostgreSQL only: SQLite's writes go through units of work
        and their group commit). In autocommit, as a read view runs: one round trip where a unit of work takes
        three (BEGIN, the statement, COMMIT), and the statement is atomic by itself (several tables' rows go in
        one statement through data-modifying CTEs). Returns once committed."""
        assert not self.inline, "PostgreSQL only"
        async with ReadView(self) as view:
            return await view.execute(statement, params)

    async def dispose(self) -> None:
        if self.group is not None:
            async with self.write_lock:
                self.group.commit()  # what units that did not wait for durability left in the open group
        if self.sync_engine is not None:
            self.sync_engine.dispose()
        elif self.engine is not None:
            await self.lanes_or_fail().close()
            await self.engine.dispose()
