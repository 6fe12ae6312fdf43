"""The plan PostgreSQL would cache for a statement: its generic plan, read with EXPLAIN, for tests that a hot
statement keeps reading a table by its key on a fresh instance (issue 9: a generic plan made while the table
was empty stayed a sequential scan for every call until autovacuum's next ANALYZE)."""

from __future__ import annotations

import json
from typing import Any

from shared.db import Database


def _sql_literal(value: Any) -> str:
    """A value as SQL text (EXECUTE takes no parameters): the few kinds these statements bind."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return f"ARRAY[{', '.join(_sql_literal(item) for item in value)}]::text[]"
    return "'" + str(value).replace("'", "''") + "'"


def _scans(plan: Any, relation: str) -> list[str]:
    found = [plan["Node Type"]] if plan.get("Relation Name") == relation else []
    for child in plan.get("Plans", []):
        found += _scans(child, relation)
    return found


async def generic_plan_scans(db: Database, statement: Any, params: dict[str, Any], relation: str) -> list[str]:
    """The scan nodes that read `relation` in the generic plan of `statement` (a Core statement) with `params`."""
    return _scans(await generic_plan(db, statement, params), relation)


def plan_indexes(plan: Any) -> list[str]:
    """The indexes a plan (or part of one) reads."""
    found = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", []):
        found += plan_indexes(child)
    return found


async def generic_plan(db: Database, statement: Any, params: dict[str, Any]) -> Any:
    """The generic plan of `statement` (a Core statement) with `params`: EXPLAIN's JSON, from its top node."""
    assert db.engine is not None
    compiled = statement.compile(dialect=db.engine.dialect)
    values = {**compiled.params, **params}
    async with db.engine.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        args = [values[name] for name in compiled.positiontup or []]
        await driver.execute(f"SET plan_cache_mode = force_generic_plan; PREPARE planned AS {compiled}")
        try:
            explained = await driver.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE planned({', '.join(_sql_literal(arg) for arg in args)})")
            plan = json.loads(explained) if isinstance(explained, str) else explained  # decoded by SQLAlchemy's codec
        finally:
            await driver.execute("DEALLOCATE planned; RESET plan_cache_mode")
    return plan[0]["Plan"]
