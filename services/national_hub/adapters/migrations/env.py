from services.national_hub.adapters.tables import HUB_TABLES  # noqa: F401  (registers the tables)
from shared.migrations import run_env

run_env()
