"""Alembic, run programmatically at service start (before the service answers /readyz), on the service's own
connection. Each service keeps its revisions under services/<svc>/adapters/migrations/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.config import Config


def upgrade_on_connection(connection: Any, script_location: Path) -> None:
    """Upgrade to head on an open synchronous connection (run_sync'd for asyncpg)."""
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_env(target_metadata: Any = None) -> None:
    """Body of every service's migrations/env.py: online mode on the connection handed in above."""
    connection = context.config.attributes["connection"]
    metadata = context.config.attributes.get("target_metadata", target_metadata)
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def autogenerate(script_location: Path, tables: tuple[Any, ...], message: str, database_path: Path) -> None:
    """Write a new revision for `tables` against a scratch SQLite database at head (`make migration`)."""
    import sqlalchemy as sa

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
