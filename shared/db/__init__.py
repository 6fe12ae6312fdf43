"""Database engines and the unit of work.

SQLite (default): one file per service instance, WAL, synchronous=FULL so that a commit is on disk before any
answer leaves; run inline (see Database). SQLite writes go through one in-process lock (one process per
instance on SQLite), which serialises writers without SQLITE_BUSY retries and lets a group commit share fsyncs.

PostgreSQL (YIBAO_DATABASE_URL): one schema per service instance, shared by every replica of it. No process
lock there: correctness across replicas comes from the database alone (DESIGN.md "Replicas"): use cases read
the rows they are about to change `FOR UPDATE` (`for_update()`; SQLite ignores it, its write lock already
covers the read), guard UPDATEs by state with row-count checks, rely on unique keys, and single-actor jobs
take a transaction-scoped advisory lock (`UnitOfWork.lead`). A transaction that loses a race on a unique key,
a deadlock or a serialization failure rolls back whole and is run again (`run_retrying`).

The package, one module a part:
- `engine`: opening a service instance's database (SQLite file or PostgreSQL schema) and `Database`;
- `sessions`: `UnitOfWork` and `ReadView`, row locks, leading a single-actor job, retrying a lost race;
- `statements`: `Prepared` statements run straight on the driver, `ByKeys`, inserts on conflict;
- `lanes`: PostgreSQL connections kept out of SQLAlchemy's pool (`Lanes`);
- `group_commit`: SQLite's group commit (`GroupCommit`);
- `combined`: a transaction's deferred rows, and a gated commit, as one PostgreSQL statement."""

from shared.db.engine import Database, drop_schemas, open_database, schema_name
from shared.db.sessions import (
    RETRY_ATTEMPTS,
    ReadView,
    UnitOfWork,
    for_update,
    in_unit_of_work,
    is_transient_conflict,
    run_retrying,
)
from shared.db.statements import ByKeys, Prepared, PreparedIn, PreparedInsertOrNothing, PreparedOnConflict

__all__ = [
    "RETRY_ATTEMPTS",
    "ByKeys",
    "Database",
    "Prepared",
    "PreparedIn",
    "PreparedInsertOrNothing",
    "PreparedOnConflict",
    "ReadView",
    "UnitOfWork",
    "drop_schemas",
    "for_update",
    "in_unit_of_work",
    "is_transient_conflict",
    "open_database",
    "run_retrying",
    "schema_name",
]
