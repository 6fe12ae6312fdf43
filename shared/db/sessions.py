"""Units of work (one transaction for one use case) and read views, with what use cases need to stay right
beside other replicas: row locks, leading a single-actor job, named locks, and running a lost race again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.combined import DeferredRows, GatedRows, group_deferred
from shared.db.lanes import Lane
from shared.db.statements import Prepared, PreparedInsertOrNothing, Rows

if TYPE_CHECKING:
    from shared.db.engine import Database

log = logging.getLogger("yibao.db")
T = TypeVar("T")
_STATUS_COUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


class Session:
    """The part both connection kinds share, awaited only where the driver is asynchronous."""

    _db: Database
    session: AsyncConnection | sa.Connection
    _driver: Any = None  # the group's sqlite3 connection, in a SQLite unit of work
    _asyncpg: Any = None  # SQLAlchemy's adapted asyncpg connection, in a PostgreSQL unit of work
    _lane: Lane | None = None  # PostgreSQL: the connection this session took (given back at its end)

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

    def _run_on_driver(self, prepared: Prepared, params: Any) -> Rows:
        assert self._db.sync_engine is not None
        batch: list[dict[str, Any]] = params if isinstance(params, list) else [params or {}]
        if not batch:
            return Rows([], 0)
        plan = prepared.plan(self._db.sync_engine.dialect, frozenset(batch[0]))
        try:
            if isinstance(params, list):
                cursor = self._driver.executemany(plan.sql, [plan.parameters(one) for one in batch])
                return Rows([], cursor.rowcount)
            cursor = self._driver.execute(plan.sql, plan.parameters(batch[0]))
            rows = [plan.row(raw) for raw in cursor.fetchall()] if cursor.description else []
        except sqlite3.Error as exc:
            # The exceptions callers catch (IntegrityError for a duplicate key) are SQLAlchemy's.
            raise sa.exc.DBAPIError.instance(plan.sql, params, exc, sqlite3.Error) from exc
        return Rows(rows, cursor.rowcount)

    async def _run_on_asyncpg(self, prepared: Prepared, params: Any, *, begin: bool = True) -> Rows:
        assert self._db.engine is not None
        dialect = self._db.engine.dialect
        batch: list[dict[str, Any]] = params if isinstance(params, list) else [params or {}]
        if not batch:
            return Rows([], 0)
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
                    return Rows([], len(batch))
                records = await statement.fetch(*plan.parameters(batch[0]))
                status = statement.get_statusmsg() or ""
        except Exception as exc:
            raise self._as_sqlalchemy_error(exc, plan.sql, params) from exc
        # An INSERT compiled for PostgreSQL returns its new key implicitly; a plan without columns wants no rows.
        rows = [plan.row(tuple(record)) for record in records] if plan.row_type._fields else []
        counted = _STATUS_COUNT.search(status)
        return Rows(rows, int(counted.group(1)) if counted else len(rows))

    def _take_lane(self, lane: Lane) -> None:
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


class UnitOfWork(Session):
    """One database transaction for one use case. Nothing is committed unless `commit()` is called;
    leaving the block without it rolls back, so a refused request changes nothing. On SQLite the
    transaction is a savepoint in a group commit (see GroupCommit); leaving the block returns only once
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
            # transaction begins at the first statement, on asyncpg or through SQLAlchemy (Lanes).
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
        deferred in one statement (`DeferredRows`), where a consumer's batch or a settle otherwise waited for
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
        on PostgreSQL all of it in one statement (`DeferredRows`)."""
        while self._deferred:
            deferred, self._deferred = self._deferred, []
            batches = group_deferred(deferred)
            if self._asyncpg is not None and (len(batches) > 1 or len(batches[0][1]) > 1) \
                    and DeferredRows.combinable(batches):
                await self._run_on_asyncpg(*DeferredRows.as_one(batches, self._asyncpg_dialect()))
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
        autocommit, each gated by the one before (`GatedRows`): one round trip where BEGIN, each write and
        COMMIT took one each (issue 9: a settle's answer at the gateway)."""
        # The hooks first (they may defer rows too), then every deferred row at once: on PostgreSQL one round
        # trip before the COMMIT, however many tables they go to.
        for work in self._before_commit:
            await work()
        self._before_commit.clear()
        if (condition is not None or self._guards) and self._asyncpg is not None and not self._began():
            batches = group_deferred(self._deferred)
            if DeferredRows.combinable(batches):
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
        statement, params = GatedRows.as_one(condition, guards, batches, self._asyncpg_dialect())
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


class ReadView(Session):
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
