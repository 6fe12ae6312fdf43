"""The one wiring function of the pharmacy gateway, used by `python -m services.pharmacy_gateway` and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.pharmacy_gateway.config import GatewaySettings
from shared.logs import configure_logging
from shared.runtime import Runtime, start_runtime, stop_runtime
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def bootstrap(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    state: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level)
        runtime = await start_runtime(settings, instance="gateway", client_id="gateway", migrations=MIGRATIONS,
                                      inbound_topic=None, handler=None)
        state["runtime"] = runtime
        try:
            yield
        finally:
            await stop_runtime(runtime)

    async def database_reachable() -> None:
        await state["runtime"].check_database()

    async def kafka_reachable() -> None:
        await state["runtime"].check_kafka()

    app, _ = create_app("Yibao pharmacy gateway (national 两定机构 interface)", lifespan,
                        [database_reachable, kafka_reachable])
    return app
