"""The inbox forgets the ids of messages applied longer ago than the retention (shared/dead_letters.py
`forget_old_inbox_ids`), a batch per transaction, and keeps every younger one, so a redelivery within Kafka's
retention is still recognised. On a province node's migrated database, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from shared import dead_letters
from shared.db import Database, UnitOfWork
from shared.messaging_tables import InboxMessage
from shared.tables import table

INBOX = table(InboxMessage)
RETENTION_S = 14 * 86_400.0


async def test_ids_older_than_the_retention_are_forgotten_and_younger_ones_kept(
        node_database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.now(UTC)
    old = [f"old-{number}" for number in range(7)]
    young = ["applied-13-days-ago", "applied-just-now"]
    async with UnitOfWork(node_database) as uow:
        await uow.execute(sa.insert(INBOX), [
            *({"message_id": message_id, "message_type": "t", "received_at": now - timedelta(days=15)}
              for message_id in old),
            {"message_id": young[0], "message_type": "t", "received_at": now - timedelta(days=13)},
            {"message_id": young[1], "message_type": "t", "received_at": now}])
        await uow.commit()
    monkeypatch.setattr(dead_letters, "INBOX_FORGET_BATCH", 3)  # three transactions: 3, 3 and 1

    assert await dead_letters.forget_old_inbox_ids(node_database, RETENTION_S) == len(old)

    async with UnitOfWork(node_database) as uow:
        assert await dead_letters.inbox_seen(uow, [*old, *young]) == set(young)
    assert await dead_letters.forget_old_inbox_ids(node_database, RETENTION_S) == 0
