from services.pharmacy_gateway.adapters.tables import GATEWAY_TABLES  # noqa: F401  (registers the tables)
from shared.migrations import run_env

run_env()
