"""The answers remembered under an `Idempotency-Key` (adapter of shared/idempotency.py): one row per principal,
method and path (`scope`) and key, with the hash of the request body it answered and the answer itself. Read
outside any transaction for the common replay, and again inside the request's own unit of work under the key's
lock (`uow.lock_name`), so that two requests with one key at once run the use case once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.db import Database, Prepared, ReadView, UnitOfWork
from shared.messaging_tables import IdempotencyRecord
from shared.tables import table

_RECORDS = table(IdempotencyRecord)
# Run straight on the driver inside a unit of work (shared/db/statements.py Prepared): every state-changing
# request runs them.
_STORED = Prepared(sa.select(_RECORDS.c.request_hash, _RECORDS.c.status_code, _RECORDS.c.body).where(
    _RECORDS.c.scope == sa.bindparam("scope"), _RECORDS.c.key == sa.bindparam("key")))
_NEW_RECORD = Prepared(sa.insert(_RECORDS))


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored: its status and its JSON body."""
    status: int
    body: bytes


@dataclass(frozen=True)
class Remembered:
    request_hash: str
    answer: Answer


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, scope: str, key: str) -> Remembered | None:
        """The answer remembered for this key, read outside any transaction (a replay needs no lock)."""
        async with ReadView(self._db) as view:
            row = (await view.execute(_STORED, {"scope": scope, "key": key})).first()
        return _remembered(row)

    async def get_locked(self, uow: UnitOfWork, scope: str, key: str) -> Remembered | None:
        """Inside `uow`, holding the key until it ends: a second request with this key waits here for the first
        to finish, then finds its answer."""
        await uow.lock_name(f"idem|{scope}|{key}")
        return _remembered((await uow.execute(_STORED, {"scope": scope, "key": key})).first())

    async def remember(self, uow: UnitOfWork, scope: str, key: str, request_hash: str, answer: Answer) -> None:
        """Written as the transaction commits, with its other deferred rows (UnitOfWork.defer): the answer is
        the use case's last word. A concurrent request that stored one for the key first fails this commit on
        the unique key; its retry replays that answer."""
        uow.defer(_NEW_RECORD, {"scope": scope, "key": key, "request_hash": request_hash,
                                "status_code": answer.status, "body": answer.body, "created_at": datetime.now(UTC)})


def _remembered(row: sa.Row[tuple[str, int, bytes]] | None) -> Remembered | None:
    if row is None:
        return None
    return Remembered(row.request_hash, Answer(row.status_code, bytes(row.body)))
