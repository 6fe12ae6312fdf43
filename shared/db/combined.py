"""A PostgreSQL transaction's deferred rows as one statement (`DeferredRows`), and a commit with a condition and
guards as one autocommit statement (`GatedRows`): one round trip where a statement per table (and BEGIN and
COMMIT) took one each."""

from __future__ import annotations

from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import dml as postgresql_dml

from shared.db.statements import Prepared, PreparedInsertOrNothing


def group_deferred(deferred: list[tuple[Prepared, dict[str, Any]]]) -> list[tuple[Prepared, list[dict[str, Any]]]]:
    """Deferred rows by statement and column set, in the order first deferred."""
    groups: dict[tuple[int, frozenset[str]], tuple[Prepared, list[dict[str, Any]]]] = {}
    for statement, params in deferred:
        key = (id(statement), frozenset(params))
        if key not in groups:
            groups[key] = (statement, [])
        groups[key][1].append(params)
    return list(groups.values())


class DeferredRows:
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


class GatedRows:
    """A PostgreSQL commit with a condition and guards (`UnitOfWork.commit`, `UnitOfWork.guard`), nothing run
    before it and deferred rows a CTE can order (`DeferredRows.combinable`), as one statement in autocommit:
    the condition's UPDATE, each guard's INSERT ... ON CONFLICT DO NOTHING and then the deferred rows' INSERTs
    (as `DeferredRows` writes them) are data-modifying CTEs, each run only where the one before it returned a
    row (`WHERE EXISTS`), so that the statement writes exactly what the same work would in a transaction of its
    own: nothing when the condition changes no row, the condition alone when the first guard meets an existing
    key. Answers one row: `condition`, 1 or 0. Hand-made for speed, hence its own tests
    (tests/integration/test_deferred_rows.py). The statement of a shape is built once."""

    _SHAPES: ClassVar[dict[Any, Prepared]] = {}

    @classmethod
    def as_one(cls, condition: tuple[Prepared, dict[str, Any]] | None,
               guards: list[tuple[PreparedInsertOrNothing, dict[str, Any]]],
               batches: list[tuple[Prepared, list[dict[str, Any]]]], dialect: Any) -> tuple[Prepared, dict[str, Any]]:
        deferred_shape = DeferredRows.shape(batches)
        condition_shape = None if condition is None else (condition[0], tuple(sorted(condition[1])))
        guards_shape = tuple((guard, tuple(sorted(params))) for guard, params in guards)
        shape = (condition_shape, guards_shape, deferred_shape)
        combined = cls._SHAPES.get(shape)
        if combined is None:
            DeferredRows.check(deferred_shape, dialect)
            combined = cls._SHAPES[shape] = Prepared(cls._statement(condition_shape, guards_shape, deferred_shape))
        params = DeferredRows.params(deferred_shape, batches)
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
        for index, insert in enumerate(DeferredRows.inserts(deferred, gate)):
            ctes.append(insert.cte(f"d{index}"))
        answered = (sa.select(sa.func.count()).select_from(ctes[0]).scalar_subquery() if condition is not None
                    else sa.literal(1))
        combined: Any = sa.select(answered.label("condition"))
        for cte in ctes:
            combined = combined.add_cte(cte)
        return combined
