"""Alembic from tests: a database brought to a given revision (not head), as a schema of an earlier release
was, to test what the later revisions do to it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from shared.db import Database


async def upgrade_to(database: Database, script_location: Path, revision: str,
                     then: sa.Executable | None = None) -> None:
    """PostgreSQL: `database`'s schema upgraded to `revision`, and `then` run, in one transaction."""

    def run(connection: sa.Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(script_location))
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    assert database.engine is not None
    async with database.engine.begin() as conn:
        await conn.run_sync(run)
        if then is not None:
            await conn.execute(then)
