"""Constant statements of the hot paths, compiled once and run straight on the driver (`Prepared`), and the
shapes built on them: a list of keys as one parameter (`ByKeys`), an insert on conflict (`PreparedOnConflict`)."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.dialects.sqlite import dml as sqlite_dml

if TYPE_CHECKING:
    from shared.db.sessions import Session, UnitOfWork


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
        self.binds = [(name, _bind_processor(compiled.binds[name].type, dialect),
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


def _bind_processor(type_: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """SQLAlchemy's converter of a bound value, but leaner for a flat array (the columns of a transaction's
    deferred rows, shared/db/combined.py): SQLAlchemy's walks every array item through a generator and checks its
    nesting level, about a tenth of a province node's CPU under load (issue 9, py-spy). A list of items that need
    no conversion (numbers, strings) goes to the driver as it is; the others are converted in one comprehension.
    Anything else (None, a tuple, a nested array) keeps SQLAlchemy's own converter.
    tests/unit/test_prepared_binds.py compares the two."""
    impl = type_.dialect_impl(dialect)
    generic: Callable[[Any], Any] | None = impl.bind_processor(dialect)
    if not isinstance(impl, sa.ARRAY) or impl.dimensions not in (None, 1) or generic is None:
        return generic
    item = impl.item_type.dialect_impl(dialect).bind_processor(dialect)

    def flat(values: Any) -> Any:
        if not isinstance(values, list) or not values or isinstance(values[0], list | tuple):
            return generic(values)  # None, another iterable, or nested: as SQLAlchemy would
        return values if item is None else [item(value) for value in values]

    return flat


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


class Rows:
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

    async def rows(self, session: Session, keys: Sequence[Any]) -> list[Any]:
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
