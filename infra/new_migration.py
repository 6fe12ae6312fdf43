"""`make migration SERVICE=province_node MSG="add quotas"`: autogenerate the next revision of one service."""

from __future__ import annotations

import importlib
import sys
import tempfile
from pathlib import Path

from shared.migrations import autogenerate

TABLE_SETS = {
    "province_node": ("services.province_node.adapters.tables", "NODE_TABLES"),
    "national_hub": ("services.national_hub.adapters.tables", "HUB_TABLES"),
    "pharmacy_gateway": ("services.pharmacy_gateway.adapters.tables", "GATEWAY_TABLES"),
}

if __name__ == "__main__":
    service, message = sys.argv[1], sys.argv[2]
    module, name = TABLE_SETS[service]
    tables = getattr(importlib.import_module(module), name)
    location = Path("services") / service / "adapters" / "migrations"
    with tempfile.TemporaryDirectory() as scratch:
        autogenerate(location, tables, message, Path(scratch) / "scratch.sqlite3")
