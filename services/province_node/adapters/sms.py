"""The SMS port and its local adapter. Locally every notice is recorded per person (what
`GET /v1/notifications` serves); a real gateway adapter would send from the same records, after commit."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import sqlalchemy as sa

from services.province_node.adapters.tables import Notification
from shared.db import UnitOfWork
from shared.tables import table

NOTIFICATIONS = table(Notification)
_NEW_NOTICE = sa.insert(NOTIFICATIONS)  # built once: every credit sends a notice


class SmsPort(Protocol):
    async def send(self, uow: UnitOfWork, psn_no: str, text: str, at: datetime) -> None: ...


class RecordingSms:
    """Records the notice in the same transaction as the change it reports: it cannot be lost, and it is
    only ever 'sent' for a change that was committed."""

    async def send(self, uow: UnitOfWork, psn_no: str, text: str, at: datetime) -> None:
        await uow.execute(_NEW_NOTICE, {"psn_no": psn_no, "time": at, "text": text})
