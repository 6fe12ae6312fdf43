from services.province_node.adapters.tables import NODE_TABLES  # noqa: F401  (registers the tables)
from shared.migrations import run_env

run_env()
