"""Database engines and the unit of work.

SQLite (default): one file per service instance, WAL, synchronous=FULL so that a commit is on disk before any
answer leaves; run inline (see Database). SQLite writes go through one in-process lock (one process per
instance on SQLite), which serialises writers without SQLITE_BUSY retries and lets a group commit share fsyncs.

PostgreSQL (YIBAO_DATABASE_URL): one schema per service instance, shared by every replica of it. No process
lock there: correctness across replicas comes from the database alone (DESIGN.md "Replicas"): use cases read
the rows they are about to change `FOR UPDATE` (`for_update()`; SQLite ignores it, its write lock already
covers the read), guard UPDATEs by state with row-count checks, rely on unique keys, and single-actor jobs
take a transaction-scoped advisory lock (`UnitOfWork.lead`). A transaction that loses a race on a unique key,
a deadlock or a serialization failure rolls back whole and is run again (`run_retrying`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import sqlite3
from collections import namedtuple
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared.migrations import upgrade_on_connection
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.db")
T = TypeVar("T")
_SCHEMA_SAFE = re.compile(r"^[a-z_][a-z0-9_]*$")
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")
# PostgreSQL connections in a service's pool beside its lanes (_Lanes): the outbox relay's listener, and the
# odd direct use of the engine (migrations, tests).
_POOL_BESIDE_LANES = 2


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
            # lanes (_Lanes) keep up to db_pool_size of them; the rest are the outbox relay's listener and the
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
        self.lanes = _Lanes(engine, lanes) if engine is not None else None
        self.sync_engine = sync_engine
        self.write_lock = asyncio.Lock()
        self.after_commit_hooks: list[Callable[[], None]] = []
        self.group = _GroupCommit(sync_engine) if sync_engine is not None else None

    @property
    def inline(self) -> bool:
        return self.sync_engine is not None

    def lanes_or_fail(self) -> _Lanes:
        assert self.lanes is not None, "PostgreSQL only"
        return self.lanes

    def connect(self) -> sa.Connection:
        """A SQLite Core connection (no ORM session: every statement here is Core, and the ORM layer costs CPU).
        PostgreSQL's sessions take a lane instead (_Lanes)."""
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
            async with self.engine.begin() as conn:
                # Replicas of one instance start together; one migrates, the others then find it at head.
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                                   {"name": f"{self.schema}.migrate"})
                await conn.run_sync(upgrade_on_connection, script_location)

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


class Prepared:
    """A constant Core statement of a hot path, run straight on the driver inside a unit of work.

    SQLAlchemy's execution around a cached statement (context, events, result wrapping; on PostgreSQL also the
    greenlet hop of its asyncio layer) costs 15–100 µs per statement here, several times the statement itself;
    a settle runs about twenty. Compiled once to the dialect's SQL, with the same bind and result converters
    SQLAlchemy would use, a Prepared statement skips all that and answers rows with attribute access
    (`row.balance_fen`): on SQLite through the sqlite3 connection of the group commit, on PostgreSQL through
    the unit of work's asyncpg connection, inside the transaction SQLAlchemy began on it, with asyncpg's
    statement cache (the one SQLAlchemy's own asyncpg adapter fills). In read views it is executed by
    SQLAlchemy as usual. As with SQLAlchemy, an INSERT or UPDATE sets the columns its parameters name: one plan
    per set of names and dialect. Every bind must be given. tests/integration/test_prepared.py checks both
    drivers against SQLAlchemy's own execution."""

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._plans: dict[tuple[str, frozenset[str]], _Plan] = {}

    def plan(self, dialect: Any, names: frozenset[str]) -> _Plan:
        key = (dialect.name, names)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = _Plan(self.statement, dialect, names)
        return plan


class PreparedIn:
    """A statement with an `IN (...)` list, prepared once per list length: an expanding bind parameter is
    compiled again on every execution. `build` gets the list's bind parameters."""

    def __init__(self, build: Callable[[list[Any]], Any]) -> None:
        self._build = build
        self._by_count: dict[int, Prepared] = {}

    def bind(self, values: list[Any], **params: Any) -> tuple[Prepared, dict[str, Any]]:
        """The statement for this many values, and its parameters (`params` are the other binds)."""
        count = len(values)
        if count not in self._by_count:
            self._by_count[count] = Prepared(self._build([sa.bindparam(f"in_{i}") for i in range(count)]))
        return self._by_count[count], params | {f"in_{i}": value for i, value in enumerate(values)}


_NO_VALUE = object()


class _Plan:
    def __init__(self, statement: Any, dialect: Any, names: frozenset[str]) -> None:
        _refuse_python_side_values(statement, names)
        compiled = statement.compile(dialect=dialect, column_keys=sorted(names))
        self.sql: str = compiled.string
        positions = list(compiled.positiontup or ())
        # The dialect's own implementation of each type: SQLite's DATETIME, not the generic DateTime.
        self.binds = [(name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect),
                       # a literal in the statement itself (`closed IS false`, `LIMIT 1`): its value
                       _NO_VALUE if compiled.binds[name].required else compiled.binds[name].effective_value)
                      for name in positions]
        if isinstance(statement, sa.Select):
            descriptions = statement.column_descriptions
        elif getattr(statement, "_returning", ()):
            descriptions = statement.returning_column_descriptions
        else:
            descriptions = []
        self.row_type: Any = namedtuple("Row", [d["name"] for d in descriptions])  # type: ignore[misc]
        self.converters = [d["type"].dialect_impl(dialect).result_processor(dialect, None) for d in descriptions]
        self.converting = any(self.converters)

    def parameters(self, params: dict[str, Any]) -> tuple[Any, ...]:
        values = []
        for name, convert, literal in self.binds:
            value = params[name] if literal is _NO_VALUE or name in params else literal
            values.append(value if convert is None else convert(value))
        return tuple(values)

    def row(self, raw: tuple[Any, ...]) -> Any:
        if self.converting:
            raw = tuple(value if convert is None else convert(value)
                        for value, convert in zip(raw, self.converters, strict=True))
        return self.row_type._make(raw)


def _refuse_python_side_values(statement: Any, names: frozenset[str]) -> None:
    """SQLAlchemy fills a column's Python-side `default` (INSERT) or `onupdate` (UPDATE) when the parameters
    leave it out; a plan run straight on the driver would not, and would silently store NULL or leave it be. So
    such a statement is refused when the plan is made, unless its parameters name those columns."""
    table = getattr(statement, "table", None)
    if table is None or not isinstance(statement, sa.Insert | sa.Update):
        return
    for column in table.columns:
        value = column.default if isinstance(statement, sa.Insert) else column.onupdate
        if value is not None and not getattr(value, "is_sequence", False) and column.key not in names:
            raise ValueError(f"Prepared {type(statement).__name__} on {table.name} leaves out {column.key}, which "
                             "has a Python-side default or onupdate: pass it explicitly")


class _Rows:
    """The part of SQLAlchemy's Result that hot paths use, over rows already fetched."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def __iter__(self) -> Any:
        return iter(self._rows)

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if not self._rows:
            raise sa.exc.NoResultFound("expected exactly one row, found none")
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("expected exactly one row, found more")
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


class ByKeys:
    """The rows of a table whose unique `key` is one of a list, in one statement whatever the list's length.

    The list is one parameter (an array on PostgreSQL, a JSON array read by json_each on SQLite), so one
    statement, one plan and one entry in asyncpg's statement cache serve every list; an expanding `IN` list is
    compiled again on every execution and is a new statement for every length. On PostgreSQL each key is looked
    up by itself (a LATERAL subquery with LIMIT 1, which the planner cannot merge into a join): PostgreSQL caches
    one generic plan for a statement run often, and on a fresh instance it makes it while the table is still
    empty, where a join or `= ANY(...)` plan stays a sequential scan of the whole table for every call until
    autovacuum's next ANALYZE (issue 9; the inbox's read in shared/dead_letters.py is the same fix). LIMIT 1 is
    why `key` must be unique. tests/integration/test_by_keys.py checks both backends and the plan."""

    def __init__(self, key: sa.Column[Any], *columns: sa.Column[Any]) -> None:
        listed = sa.func.unnest(sa.bindparam("keys", type_=postgresql.ARRAY(key.type))).table_valued("key")
        keys = listed.render_derived(name="keys")
        found = sa.select(*columns).where(key == keys.c.key).limit(1).lateral("found")
        self._postgresql = Prepared(sa.select(*found.c).select_from(keys.join(found, sa.true())))
        as_json = sa.func.json_each(sa.bindparam("keys", type_=sa.Text())).table_valued("value").alias("keys")
        self._sqlite = Prepared(sa.select(*columns).where(key.in_(sa.select(as_json.c.value))))

    async def rows(self, session: _Session, keys: Sequence[Any]) -> list[Any]:
        listed = list(dict.fromkeys(keys))  # a key listed twice answers once, as with IN
        if not listed:
            return []
        if session._db.inline:
            return list(await session.execute(self._sqlite, {"keys": json.dumps(listed)}))
        return list(await session.execute(self._postgresql, {"keys": listed}))


class PreparedOnConflict:
    """An `INSERT ... ON CONFLICT ...` into `table`, Prepared for the unit of work's backend: `on_conflict` adds
    the clause to the dialect's insert. One Prepared per backend, since the clause is each dialect's own
    construct."""

    def __init__(self, table: sa.Table, on_conflict: Callable[[Any], Any]) -> None:
        self.table = table
        self._postgresql = Prepared(on_conflict(postgresql_dml.insert(table)))
        self._sqlite = Prepared(on_conflict(sqlite_dml.insert(table)))

    def on(self, uow: UnitOfWork) -> Prepared:
        return self._postgresql if uow.shares_rows else self._sqlite


class PreparedInsertOrNothing(PreparedOnConflict):
    """`INSERT ... ON CONFLICT (key) DO NOTHING RETURNING key`: an insert that meets an existing row (on PostgreSQL
    also one a concurrent transaction commits meanwhile: it waits for it) answers no row, where a plain INSERT
    would fail the whole transaction."""

    def __init__(self, table: sa.Table, key: str) -> None:
        super().__init__(table, lambda insert: insert.on_conflict_do_nothing(index_elements=[key])
                         .returning(table.c[key]))
        self.key = key


class _Session:
    """The part both connection kinds share, awaited only where the driver is asynchronous."""

    _db: Database
    session: AsyncConnection | sa.Connection
    _driver: Any = None  # the group's sqlite3 connection, in a SQLite unit of work
    _asyncpg: Any = None  # SQLAlchemy's adapted asyncpg connection, in a PostgreSQL unit of work
    _lane: _Lane | None = None  # PostgreSQL: the connection this session took (given back at its end)

    async def execute(self, statement: Any, params: Any = None) -> Any:
        if isinstance(statement, Prepared):
            if self._driver is not None:
                return self._run_on_driver(statement, params)
            if self._asyncpg is not None:
                return await self._run_on_asyncpg(statement, params)
            statement = statement.statement
        if isinstance(self.session, sa.Connection):
            return self.session.execute(statement, params)
        return await self.session.execute(statement, params)

    def _run_on_driver(self, prepared: Prepared, params: Any) -> _Rows:
        assert self._db.sync_engine is not None
        batch: list[dict[str, Any]] = params if isinstance(params, list) else [params or {}]
        if not batch:
            return _Rows([], 0)
        plan = prepared.plan(self._db.sync_engine.dialect, frozenset(batch[0]))
        try:
            if isinstance(params, list):
                cursor = self._driver.executemany(plan.sql, [plan.parameters(one) for one in batch])
                return _Rows([], cursor.rowcount)
            cursor = self._driver.execute(plan.sql, plan.parameters(batch[0]))
            rows = [plan.row(raw) for raw in cursor.fetchall()] if cursor.description else []
        except sqlite3.Error as exc:
            # The exceptions callers catch (IntegrityError for a duplicate key) are SQLAlchemy's.
            raise sa.exc.DBAPIError.instance(plan.sql, params, exc, sqlite3.Error) from exc
        return _Rows(rows, cursor.rowcount)

    async def _run_on_asyncpg(self, prepared: Prepared, params: Any, *, begin: bool = True) -> _Rows:
        assert self._db.engine is not None
        dialect = self._db.engine.dialect
        batch: list[dict[str, Any]] = params if isinstance(params, list) else [params or {}]
        if not batch:
            return _Rows([], 0)
        plan = prepared.plan(dialect, frozenset(batch[0]))
        adapted = self._asyncpg
        try:
            async with adapted._execute_mutex:
                # The transaction SQLAlchemy began on this connection (its adapter starts it lazily, at the
                # first statement, exactly so); a read view's statements run without one (autocommit).
                if begin and adapted._transaction is None:
                    await adapted._start_transaction()
                statement, _ = await adapted._prepare(plan.sql, 0)
                if isinstance(params, list):
                    await statement.executemany([plan.parameters(one) for one in batch])
                    return _Rows([], len(batch))
                records = await statement.fetch(*plan.parameters(batch[0]))
                status = statement.get_statusmsg() or ""
        except Exception as exc:
            raise self._as_sqlalchemy_error(exc, plan.sql, params) from exc
        # An INSERT compiled for PostgreSQL returns its new key implicitly; a plan without columns wants no rows.
        rows = [plan.row(tuple(record)) for record in records] if plan.row_type._fields else []
        counted = _STATUS_COUNT.search(status)
        return _Rows(rows, int(counted.group(1)) if counted else len(rows))

    def _take_lane(self, lane: _Lane) -> None:
        self._lane = lane
        self.session = lane.connection
        self._asyncpg = lane.adapted

    def _as_sqlalchemy_error(self, exc: Exception, sql: str, params: Any) -> Exception:
        """What asyncpg raised, as the exception callers catch: SQLAlchemy's (IntegrityError for a duplicate key,
        the SQLSTATEs run_retrying looks for), around its adapter's DBAPI error."""
        assert self._db.engine is not None
        dialect = self._db.engine.dialect
        try:
            self._asyncpg._handle_exception(exc)
        except Exception as dbapi_error:
            return sa.exc.DBAPIError.instance(sql, params, dbapi_error, dialect.loaded_dbapi.Error, dialect=dialect)
        return exc  # pragma: no cover - _handle_exception always raises

    @contextlib.asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: what fails inside rolls back alone, the surrounding work goes on (and so do
        the writes it deferred: `UnitOfWork.defer`)."""
        deferred: list[Any] | None = getattr(self, "_deferred", None)
        mark = len(deferred) if deferred is not None else 0
        if isinstance(self.session, sa.Connection):
            nested = self.session.begin_nested()
            try:
                yield
            except BaseException:
                nested.rollback()
                if deferred is not None:
                    del deferred[mark:]
                raise
            nested.commit()
            return
        async_nested = await self.session.begin_nested()
        try:
            yield
        except BaseException:
            await async_nested.rollback()
            if deferred is not None:
                del deferred[mark:]
            raise
        await async_nested.commit()

    async def _finish(self, commit: bool) -> None:
        if self._db.lanes is not None:
            if self._lane is not None:  # else given back already (a commit that failed, then the exit's rollback)
                await self._finish_lane(commit)
            return
        assert isinstance(self.session, sa.Connection)
        if commit:
            self.session.commit()
        else:
            self.session.rollback()
        self.session.close()

    async def _finish_lane(self, commit: bool) -> None:
        """End the transaction on this lane and give the lane back. Straight on asyncpg when only Prepared
        statements ran (they began it); through SQLAlchemy when it ran a statement of its own, so that its
        connection leaves its transaction too."""
        lane, self._lane = self._lane, None
        assert lane is not None and isinstance(self.session, AsyncConnection)
        usable = False
        try:
            if self.session.in_transaction():
                await (self.session.commit() if commit else self.session.rollback())
            elif self._asyncpg._transaction is not None:
                # Forgotten first, as SQLAlchemy's adapter does: once asyncpg was asked, the transaction is over
                # whether or not the call raised.
                transaction, self._asyncpg._transaction = self._asyncpg._transaction, None
                try:
                    await (transaction.commit() if commit else transaction.rollback())
                except Exception as exc:
                    raise self._as_sqlalchemy_error(exc, "COMMIT" if commit else "ROLLBACK", None) from exc
            usable = True
        finally:
            self._asyncpg.autocommit = False  # a read view's autocommit ends with it
            await self._db.lanes_or_fail().give_back(lane, usable=usable)


class _Lane:
    """A PostgreSQL connection checked out of SQLAlchemy's pool for good, with its asyncpg adapter at hand."""

    __slots__ = ("adapted", "connection")

    def __init__(self, connection: AsyncConnection, adapted: Any) -> None:
        self.connection = connection
        self.adapted = adapted


class _Lanes:
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
        self._idle: list[_Lane] = []
        self._free = asyncio.Semaphore(size)
        self._timeout_s = timeout_s

    async def take(self) -> _Lane:
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
            return _Lane(connection, adapted)
        except BaseException:
            self._free.release()
            raise

    async def give_back(self, lane: _Lane, *, usable: bool) -> None:
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


class _GroupCommit:
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


class UnitOfWork(_Session):
    """One database transaction for one use case. Nothing is committed unless `commit()` is called;
    leaving the block without it rolls back, so a refused request changes nothing. On SQLite the
    transaction is a savepoint in a group commit (see _GroupCommit); leaving the block returns only once
    the change is on disk, unless `durable=False`: then it returns at once, and the change is committed with
    the next group (at the latest LAZY_FLUSH_S later). That is only for a record whose loss in a crash
    something else covers (the pharmacy gateway's PENDING log row); on PostgreSQL every commit waits."""

    def __init__(self, db: Database, *, durable: bool = True) -> None:
        self._db = db
        self._durable_wanted = durable
        self._committed = False
        self._finished = False
        self.wrote_outbox = False
        self._driver: Any = None  # the group's sqlite3 connection (SQLite only)
        self._durable: asyncio.Future[None] | None = None
        # What adapters keep for the length of this transaction (ledger_repo's deferred system-account sums).
        self.state: dict[str, Any] = {}
        self._before_commit: list[Callable[[], Awaitable[None]]] = []
        self._deferred: list[tuple[Prepared, dict[str, Any]]] = []
        self._guards: list[tuple[PreparedInsertOrNothing, dict[str, Any]]] = []

    async def __aenter__(self) -> UnitOfWork:
        group = self._db.group
        if group is None:
            # PostgreSQL: no process lock (replicas share the schema; the database guards every change). The
            # transaction begins at the first statement, on asyncpg or through SQLAlchemy (_Lanes).
            self._take_lane(await self._db.lanes_or_fail().take())
            return self
        group.wanting_lock += 1
        try:
            await self._db.write_lock.acquire()
        except BaseException:
            group.wanting_lock -= 1
            raise
        self.session = group.open()
        self._driver = group.driver()
        self._driver.execute("SAVEPOINT unit_of_work")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        group = self._db.group
        if group is None:
            if not self._finished:
                await self._finish(commit=False)
        else:
            try:
                if not self._finished:
                    self._driver.execute("ROLLBACK TO SAVEPOINT unit_of_work")
                    self._driver.execute("RELEASE SAVEPOINT unit_of_work")
            finally:
                try:
                    group.wanting_lock -= 1
                    group.after_member(self._db.write_lock)
                finally:
                    self._db.write_lock.release()
        if self._durable is not None:
            await self._durable
        if self._committed and self.wrote_outbox:
            for hook in self._db.after_commit_hooks:
                hook()

    def before_commit(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work` inside this transaction just before it commits (last statements: their row locks are held
        for the shortest time)."""
        self._before_commit.append(work)

    def defer(self, statement: Prepared, params: dict[str, Any]) -> None:
        """Run the INSERT `statement` with `params` as this transaction commits, after its `before_commit` work:
        on SQLite with the other rows of the statement in one executemany, on PostgreSQL with every row
        deferred in one statement (`_DeferredRows`), where a consumer's batch or a settle otherwise waited for
        one round trip per row. Rows of one statement are written in the order they were deferred (the
        outbox's seq order). Only for rows that nothing reads back in this transaction and that no row written
        meanwhile refers to: outbox messages, ledger lines, audit entries, a message's record. A row that
        breaks a unique key fails the commit, and the whole transaction rolls back."""
        self._deferred.append((statement, params))

    def guard(self, statement: PreparedInsertOrNothing, params: dict[str, Any]) -> None:
        """Insert the row `params` as this transaction commits, unless its key exists (then nothing), and write
        what the transaction defers (`defer`, before and after this call) only if the row was inserted: the rest
        follows from it being new (a settlement's first answer and the events it starts). Guards run in the order
        given, each only if the one before inserted. Run with the deferred rows, so that a commit with a
        `condition` and nothing executed before it is one statement on PostgreSQL (`commit`)."""
        self._guards.append((statement, params))

    async def write_deferred(self) -> None:
        """Write what was deferred so far now (commit does it anyway): on SQLite one executemany per statement;
        on PostgreSQL all of it in one statement (`_DeferredRows`)."""
        while self._deferred:
            deferred, self._deferred = self._deferred, []
            batches = _group_deferred(deferred)
            if self._asyncpg is not None and (len(batches) > 1 or len(batches[0][1]) > 1) \
                    and _DeferredRows.combinable(batches):
                await self._run_on_asyncpg(*_DeferredRows.as_one(batches, self._asyncpg_dialect()))
                continue
            for statement, rows in batches:
                await self.execute(statement, rows if len(rows) > 1 else rows[0])

    def _asyncpg_dialect(self) -> Any:
        assert self._db.engine is not None
        return self._db.engine.dialect

    async def commit(self, *, condition: tuple[Prepared, dict[str, Any]] | None = None) -> bool:
        """Commit, and return True. With a `condition` (an UPDATE, Prepared, guarded by its WHERE clause; its
        parameters name the columns it sets and, with `b_` names, its binds), first run it, and when it changes no
        row, leave everything this transaction did undone and return False. On PostgreSQL, when no statement ran
        before the commit, the condition, the guards (`guard`) and the deferred rows are one statement in
        autocommit, each gated by the one before (`_GatedRows`): one round trip where BEGIN, each write and
        COMMIT took one each (issue 9: a settle's answer at the gateway)."""
        # The hooks first (they may defer rows too), then every deferred row at once: on PostgreSQL one round
        # trip before the COMMIT, however many tables they go to.
        for work in self._before_commit:
            await work()
        self._before_commit.clear()
        if (condition is not None or self._guards) and self._asyncpg is not None and not self._began():
            batches = _group_deferred(self._deferred)
            if _DeferredRows.combinable(batches):
                return await self._commit_alone(condition, batches)
            # Rows a CTE cannot order (two column sets for one table): as statements of a transaction, below.
        if condition is not None:
            statement, params = condition
            if (await self.execute(statement, params)).rowcount == 0:
                return False  # leaving the block rolls back
        for guard, params in self._guards:
            if not (await self.execute(guard.on(self), params)).first():
                self._deferred.clear()
                break
        self._guards.clear()
        await self.write_deferred()
        if self._db.group is not None:
            self._driver.execute("RELEASE SAVEPOINT unit_of_work")
            if self._durable_wanted:
                self._durable = self._db.group.enlist()
            else:
                self._db.group.lazy = True
        else:
            await self._finish(commit=True)
        self._committed = self._finished = True
        return True

    def _began(self) -> bool:
        """PostgreSQL: whether a statement of this unit of work began its transaction."""
        return self._asyncpg._transaction is not None or self.session.in_transaction()

    async def _commit_alone(self, condition: tuple[Prepared, dict[str, Any]] | None,
                            batches: list[tuple[Prepared, list[dict[str, Any]]]]) -> bool:
        guards, self._guards, self._deferred = self._guards, [], []
        statement, params = _GatedRows.as_one(condition, guards, batches, self._asyncpg_dialect())
        written = (await self._run_on_asyncpg(statement, params, begin=False)).one()
        await self._finish(commit=True)  # nothing to commit: the lane goes back
        self._finished = True
        self._committed = bool(written.condition)
        return self._committed

    @property
    def shares_rows(self) -> bool:
        """Whether concurrent transactions (other replicas, or other requests of this one) may change the rows
        this one reads: PostgreSQL. On SQLite one unit of work runs at a time."""
        return self._db.group is None

    async def lead(self, job: str) -> bool:
        """Whether this transaction may run the single-actor job `job` (a timeout scan, an expiry, the outbox
        relay): on PostgreSQL a transaction-scoped advisory lock that one replica at a time gets, released at
        commit or rollback (so a crashed leader's turn passes at once); on SQLite, always (one process)."""
        if self._db.group is not None:
            return True
        result = await self.execute(_TRY_NAMED_LOCK, {"name": f"{self._db.schema}.{job}"})
        return bool(result.scalar())

    async def lock_name(self, name: str) -> None:
        """Wait until no other transaction holds `name` (PostgreSQL advisory lock, released at the end of this
        transaction): for check-then-act on something that has no row yet, such as an Idempotency-Key."""
        if self._db.group is None:
            await self.execute(_NAMED_LOCK, {"name": f"{self._db.schema}.{name}"})


def _group_deferred(deferred: list[tuple[Prepared, dict[str, Any]]]) -> list[tuple[Prepared, list[dict[str, Any]]]]:
    """Deferred rows by statement and column set, in the order first deferred."""
    groups: dict[tuple[int, frozenset[str]], tuple[Prepared, list[dict[str, Any]]]] = {}
    for statement, params in deferred:
        key = (id(statement), frozenset(params))
        if key not in groups:
            groups[key] = (statement, [])
        groups[key][1].append(params)
    return list(groups.values())


class _DeferredRows:
    """A PostgreSQL unit of work's deferred rows (`UnitOfWork.defer`) as one statement: each statement's rows
    arrive as one array per column and are inserted from `unnest(...)` in the order they were deferred, and
    the inserts into several tables are data-modifying CTEs of one `WITH ... SELECT 1`. A settle's ledger lines,
    system-account deltas, audit entries and outbox messages, or a consumer batch's hundreds of rows, then cost
    one round trip and one execution per table, where one executemany per table cost a round trip each and one
    execution per row (issue 9: round trips are most of a settle's CPU). Hand-made for speed, hence its own
    tests (tests/integration/test_deferred_rows.py, against the executemany it replaces). The statement of a
    shape (which statements, which columns) is built once."""

    _SHAPES: ClassVar[dict[tuple[tuple[Prepared, tuple[str, ...]], ...], Prepared]] = {}

    @staticmethod
    def combinable(batches: list[tuple[Prepared, list[dict[str, Any]]]]) -> bool:
        """Plain INSERTs into distinct tables: the CTEs of one statement run in no set order, so two batches
        into one table (the outbox's seq order) are left to one executemany each."""
        tables = [getattr(statement.statement, "table", None) for statement, _ in batches]
        return (all(isinstance(statement.statement, sa.Insert) and not statement.statement._returning
                    and statement.statement._values is None for statement, _ in batches)
                and len({id(table) for table in tables}) == len(tables))

    @staticmethod
    def shape(batches: list[tuple[Prepared, list[dict[str, Any]]]]) -> tuple[tuple[Prepared, tuple[str, ...]], ...]:
        """Which statements, with which columns: what one combined statement is built for."""
        return tuple((statement, tuple(sorted(rows[0]))) for statement, rows in batches)

    @staticmethod
    def check(shape: tuple[tuple[Prepared, tuple[str, ...]], ...], dialect: Any) -> None:
        """Refuses what the executemany would (Python-side defaults), before a combined statement is built."""
        for statement, names in shape:
            statement.plan(dialect, frozenset(names))

    @classmethod
    def as_one(cls, batches: list[tuple[Prepared, list[dict[str, Any]]]],
               dialect: Any) -> tuple[Prepared, dict[str, Any]]:
        shape = cls.shape(batches)
        combined = cls._SHAPES.get(shape)
        if combined is None:
            cls.check(shape, dialect)
            combined = cls._SHAPES[shape] = Prepared(cls._statement(shape))
        return combined, cls.params(shape, batches)

    @staticmethod
    def inserts(shape: tuple[tuple[Prepared, tuple[str, ...]], ...], gate: Any = None) -> list[Any]:
        """One INSERT ... SELECT FROM unnest(...) per statement of `shape`; with `gate`, a condition of each."""
        inserts = []
        for index, (statement, names) in enumerate(shape):
            table = statement.statement.table
            arrays = [sa.bindparam(f"d{index}_{name}", type_=postgresql.ARRAY(table.c[name].type)) for name in names]
            rows = sa.func.unnest(*arrays).table_valued(*names, with_ordinality="deferred_order",
                                                        name=f"d{index}_rows").render_derived()
            select = sa.select(*[rows.c[name] for name in names]).order_by(rows.c.deferred_order)
            if gate is not None:
                select = select.where(gate)
            inserts.append(sa.insert(table).from_select(list(names), select))
        return inserts

    @staticmethod
    def params(shape: tuple[tuple[Prepared, tuple[str, ...]], ...],
               batches: list[tuple[Prepared, list[dict[str, Any]]]]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for index, ((_, names), (_, rows)) in enumerate(zip(shape, batches, strict=True)):
            for name in names:
                params[f"d{index}_{name}"] = [row[name] for row in rows]
        return params

    @classmethod
    def _statement(cls, shape: tuple[tuple[Prepared, tuple[str, ...]], ...]) -> Any:
        inserts = cls.inserts(shape)
        if len(inserts) == 1:
            return inserts[0]
        combined: Any = sa.select(sa.literal_column("1").label("written"))
        for index, insert in enumerate(inserts):
            combined = combined.add_cte(insert.cte(f"d{index}"))
        return combined


class _GatedRows:
    """A PostgreSQL commit with a condition and guards (`UnitOfWork.commit`, `UnitOfWork.guard`), nothing run
    before it and deferred rows a CTE can order (`_DeferredRows.combinable`), as one statement in autocommit:
    the condition's UPDATE, each guard's INSERT ... ON CONFLICT DO NOTHING and then the deferred rows' INSERTs
    (as `_DeferredRows` writes them) are data-modifying CTEs, each run only where the one before it returned a
    row (`WHERE EXISTS`), so that the statement writes exactly what the same work would in a transaction of its
    own: nothing when the condition changes no row, the condition alone when the first guard meets an existing
    key. Answers one row: `condition`, 1 or 0. Hand-made for speed, hence its own tests
    (tests/integration/test_deferred_rows.py). The statement of a shape is built once."""

    _SHAPES: ClassVar[dict[Any, Prepared]] = {}

    @classmethod
    def as_one(cls, condition: tuple[Prepared, dict[str, Any]] | None,
               guards: list[tuple[PreparedInsertOrNothing, dict[str, Any]]],
               batches: list[tuple[Prepared, list[dict[str, Any]]]], dialect: Any) -> tuple[Prepared, dict[str, Any]]:
        deferred_shape = _DeferredRows.shape(batches)
        condition_shape = None if condition is None else (condition[0], tuple(sorted(condition[1])))
        guards_shape = tuple((guard, tuple(sorted(params))) for guard, params in guards)
        shape = (condition_shape, guards_shape, deferred_shape)
        combined = cls._SHAPES.get(shape)
        if combined is None:
            _DeferredRows.check(deferred_shape, dialect)
            combined = cls._SHAPES[shape] = Prepared(cls._statement(condition_shape, guards_shape, deferred_shape))
        params = _DeferredRows.params(deferred_shape, batches)
        if condition is not None:
            params.update({f"c_{name}": value for name, value in condition[1].items()})
        for index, (_, guard_params) in enumerate(guards):
            params.update({f"g{index}_{name}": value for name, value in guard_params.items()})
        return combined, params

    @staticmethod
    def _statement(condition: tuple[Prepared, tuple[str, ...]] | None,
                   guards: tuple[tuple[PreparedInsertOrNothing, tuple[str, ...]], ...],
                   deferred: tuple[tuple[Prepared, tuple[str, ...]], ...]) -> Any:
        ctes: list[Any] = []
        gate: Any = None
        one: Any = sa.literal_column("1")
        if condition is not None:
            statement, names = condition
            update: Any = statement.statement
            if not isinstance(update, sa.Update):
                raise ValueError("a commit's condition is an UPDATE")
            table = update.table

            def rename(element: Any, **_: Any) -> Any:
                if isinstance(element, sa.BindParameter) and element.key in names:
                    return sa.bindparam(f"c_{element.key}", type_=element.type)
                return None

            # Its binds renamed `c_...`, the columns it sets from the parameters that name one.
            no_options: dict[str, Any] = {}
            renamed: Any = sa.sql.visitors.replacement_traverse(update, no_options, rename)
            ctes.append(renamed.values({name: sa.bindparam(f"c_{name}", type_=table.c[name].type)
                                        for name in names if name in table.c}).returning(one).cte("c"))
            gate = sa.exists(sa.select(one).select_from(ctes[-1]))
        for index, (guard, names) in enumerate(guards):
            table = guard.table
            values = sa.select(*[sa.bindparam(f"g{index}_{name}", type_=table.c[name].type) for name in names])
            if gate is not None:
                values = values.where(gate)
            ctes.append(postgresql_dml.insert(table).from_select(list(names), values)
                        .on_conflict_do_nothing(index_elements=[guard.key]).returning(one).cte(f"g{index}"))
            gate = sa.exists(sa.select(one).select_from(ctes[-1]))
        for index, insert in enumerate(_DeferredRows.inserts(deferred, gate)):
            ctes.append(insert.cte(f"d{index}"))
        answered = (sa.select(sa.func.count()).select_from(ctes[0]).scalar_subquery() if condition is not None
                    else sa.literal(1))
        combined: Any = sa.select(answered.label("condition"))
        for cte in ctes:
            combined = combined.add_cte(cte)
        return combined


# PostgreSQL's transaction-scoped advisory locks, keyed by a name's hash (hot: idempotency keys, settlements).
_NAMED_LOCK = Prepared(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(
    sa.bindparam("name", type_=sa.String))).label("locked")))
_TRY_NAMED_LOCK = Prepared(sa.select(sa.func.pg_try_advisory_xact_lock(sa.func.hashtext(
    sa.bindparam("name", type_=sa.String))).label("locked")))


def for_update(statement: Any) -> Any:
    """A read of the rows a use case is about to change, locked until its transaction ends, so that replicas
    (and concurrent requests of one replica on PostgreSQL) change them one after another; a waiting reader
    then sees the committed newer row. SQLite's dialect leaves the clause out: its write lock covers it."""
    return statement.with_for_update()


# SQLSTATEs of a transaction that lost to a concurrent one and may simply run again.
_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected
RETRY_ATTEMPTS = 5


def is_transient_conflict(exc: BaseException) -> bool:
    """A unique-key race, a deadlock or a serialization failure: the whole transaction rolled back, and
    running it again reads what the winner committed (an existing row, a stored answer)."""
    if isinstance(exc, sa.exc.IntegrityError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code in _TRANSIENT_SQLSTATES
    return False


async def run_retrying(attempt: Callable[[], Awaitable[T]], attempts: int = RETRY_ATTEMPTS) -> T:
    """Run `attempt` (one whole transaction) again when it lost a race (`is_transient_conflict`)."""
    for number in range(1, attempts + 1):
        try:
            return await attempt()
        except Exception as exc:
            if number == attempts or not is_transient_conflict(exc):
                raise
            log.info("transaction lost a race (%s); running it again", type(exc).__name__)
            await asyncio.sleep(0.002 * number)
    raise AssertionError("unreachable")


async def in_unit_of_work(db: Database, work: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """Run `work` in one unit of work and commit it: everything it did lands together or not at all. A
    transaction that lost a race with a concurrent one (see `is_transient_conflict`) runs again."""

    async def attempt() -> T:
        async with UnitOfWork(db) as uow:
            result = await work(uow)
            await uow.commit()
        return result

    return await run_retrying(attempt)


class ReadView(_Session):
    """A read-only session (no write lock): queries that change nothing.

    On PostgreSQL its statements run without a transaction around them (autocommit), which saves the BEGIN and
    the ROLLBACK, two round trips per view (issue 9: a transfer's accept ran two or three views). At READ
    COMMITTED, the default, each statement of a transaction sees its own snapshot anyway, so that changes nothing
    a reader sees. A view whose first statement is `SET TRANSACTION ...` (one snapshot for all its reads, as
    REPEATABLE READ gives) keeps its transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._first = True

    async def __aenter__(self) -> ReadView:
        if self._db.lanes is not None:
            self._take_lane(await self._db.lanes.take())
        else:
            self.session = self._db.connect()
        return self

    async def execute(self, statement: Any, params: Any = None) -> Any:
        if isinstance(statement, Prepared) and self._asyncpg is not None:
            # Straight on the driver, as in a unit of work, in autocommit (or in the transaction a SET
            # TRANSACTION began): SQLAlchemy's execution around a read was most of a read view's CPU.
            return await self._run_on_asyncpg(statement, params, begin=False)
        if self._first:
            self._first = False
            if self._asyncpg is not None and not _sets_transaction(statement):
                # SQLAlchemy's statements then run without BEGIN too (its adapter asks this flag); reset when
                # the view gives its lane back.
                self._asyncpg.autocommit = True
        return await super().execute(statement, params)

    async def __aexit__(self, *_: object) -> None:
        await self._finish(commit=False)


def _sets_transaction(statement: Any) -> bool:
    return isinstance(statement, sa.TextClause) and statement.text.lstrip().upper().startswith("SET TRANSACTION")
