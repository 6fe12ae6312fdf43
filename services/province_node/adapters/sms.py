"""The SMS port and its local adapter. Locally every notice is recorded per person (what
`GET /v1/notifications` serves); a real gateway adapter would send from the same records, after commit."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from services.province_node.adapters.tables import Notification
from shared.db import Prepared, UnitOfWork
from shared.tables import table

NOTIFICATIONS = table(Notification)
# The column's length: a longer notice is cut, never a failed commit of the money it reports.
NOTICE_MAX_CHARS = getattr(NOTIFICATIONS.c.text.type, "length", None)
assert isinstance(NOTICE_MAX_CHARS, int), "notifications.text has a length"
_NEW_NOTICE = Prepared(sa.insert(NOTIFICATIONS))  # built once: every credit sends a notice


class SmsPort(Protocol):
    # True when send() only defers a row to the commit (UnitOfWork.defer) and does nothing else that could fail
    # halfway: the caller then needs no savepoint around it (two round trips per notice on PostgreSQL).
    records_at_commit: bool

    async def send(self, uow: UnitOfWork, psn_no: str, text: str, at: datetime) -> None: ...


class RecordingSms:
    """Records the notice in the same transaction as the change it reports: it cannot be lost, and it is
    only ever 'sent' for a change that was committed. Written with the transaction's other deferred rows."""

    records_at_commit = True

    async def send(self, uow: UnitOfWork, psn_no: str, text: str, at: datetime) -> None:
        uow.defer(_NEW_NOTICE, {"psn_no": psn_no, "time": at, "text": text[:NOTICE_MAX_CHARS]})
