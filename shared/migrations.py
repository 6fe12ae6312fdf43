"""Alembic, run programmatically at service start (before the service answers /readyz), on the service's own
connection. Each service keeps its revisions under services/<svc>/adapters/migrations/.

On PostgreSQL the connection comes with no transaction open (shared/db/engine.py `Database.migrate`): each
revision then runs in a transaction of its own, and a revision may build an index on a large table in use
without stopping its writers (`create_index_online`). On SQLite, and wherever a caller hands in a connection
inside its transaction (`make migration`, tests), all revisions run in that one transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config


def upgrade_on_connection(connection: Any, script_location: Path) -> None:
    """Upgrade to head on an open synchronous connection (run_sync'd for asyncpg)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


# Set by run_env: whether revisions run in transactions of their own (the connection came without one), so that a
# revision may step outside its transaction for a concurrent index build.
_PER_REVISION = "transaction_per_revision"


def run_env(target_metadata: Any = None) -> None:
    """Body of every service's migrations/env.py: online mode on the connection handed in above."""
    connection = context.config.attributes["connection"]
    metadata = context.config.attributes.get("target_metadata", target_metadata)
    per_revision = not connection.in_transaction()
    context.config.attributes[_PER_REVISION] = per_revision
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                      transaction_per_migration=per_revision)
    with context.begin_transaction():
        context.run_migrations()


def autogenerate(script_location: Path, tables: tuple[Any, ...], message: str, database_path: Path) -> None:
    """Write a new revision for `tables` against a scratch SQLite database at head (`make migration`)."""
    metadata = sa.MetaData()
    for table in tables:
        table.__table__.to_metadata(metadata)
    config = Config()
    config.set_main_option("script_location", str(script_location))
    engine = sa.create_engine(f"sqlite:///{database_path}")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["target_metadata"] = metadata
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True)


def create_index_online(table: str, name: str, columns: list[str], *, replaces: tuple[str, ...] = ()) -> None:
    """In a revision: the index `name` on `table`, and the indexes it `replaces` dropped, without stopping the
    table's writers on PostgreSQL.

    A plain CREATE INDEX holds a lock that stops every insert and update of the table until the build ends:
    minutes for an inbox or a settlements table of tens of millions of rows, while the other replicas, still
    running, wait on it. So where the table has rows, on PostgreSQL, the index is built CONCURRENTLY (and the
    old ones dropped CONCURRENTLY), outside the revision's transaction. That is not atomic: a build that died
    half-way leaves an INVALID index of that name and the revision not recorded, so the revision runs again, and
    it drops whatever of that name is there before it builds (and drops the old ones only if they are still
    there). Where the table is empty (a new federation), or on SQLite, or inside a caller's transaction, the
    plain statements run in the revision's transaction, as any other."""
    bind = op.get_bind()
    online = (bind.dialect.name == "postgresql" and context.config.attributes.get(_PER_REVISION, False)
              and _has_rows(bind, table))
    if not online:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)
            for old in replaces:
                batch_op.drop_index(old)
        return
    with op.get_context().autocommit_block():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        op.create_index(name, table, columns, unique=False, postgresql_concurrently=True)
        for old in replaces:
            op.drop_index(old, table_name=table, postgresql_concurrently=True, if_exists=True)


def _has_rows(bind: Any, table: str) -> bool:
    return bool(bind.execute(sa.select(sa.exists().select_from(sa.table(table)))).scalar())
