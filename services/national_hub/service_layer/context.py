from __future__ import annotations

from dataclasses import dataclass

from services.national_hub.adapters.node_client import NodeClient
from services.national_hub.config import HubSettings
from shared.clock import Clock
from shared.db import Database


@dataclass
class HubContext:
    settings: HubSettings
    db: Database
    clock: Clock
    source: str = "hub"
    nodes: NodeClient | None = None  # synchronous calls to province nodes (premiums)
