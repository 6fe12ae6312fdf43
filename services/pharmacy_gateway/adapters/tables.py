"""The gateway's tables (its POS work grows here: institutions, catalogue, settlements)."""

from __future__ import annotations

from shared.messaging_tables import IdempotencyRecord, InboxMessage, OutboxMessage

GATEWAY_TABLES = (OutboxMessage, InboxMessage, IdempotencyRecord)
