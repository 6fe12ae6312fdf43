"""The one wiring function of the national hub, used by `python -m services.national_hub` and by tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.national_hub.adapters.node_client import NodeClient
from services.national_hub.config import HubSettings
from services.national_hub.entrypoints import api, console, dead_letters_ops_api, ops_api
from services.national_hub.service_layer import audit_chain, messages, transfers
from services.national_hub.service_layer.context import HubContext
from shared import audit
from shared.clock import Clock, SystemClock
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.db import UnitOfWork
from shared.dead_letters_api import install_dead_letters
from shared.logs import configure_logging
from shared.runtime import Runtime, readiness_checks, start_runtime, stop_runtime
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def bootstrap(settings: HubSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or HubSettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level)
        ctx_holder: list[HubContext] = []

        async def handle(uow: UnitOfWork, envelopes: list[Envelope]) -> None:
            await messages.handle_batch(ctx_holder[0], uow, envelopes)

        runtime = await start_runtime(settings, instance="hub", client_id="hub", migrations=MIGRATIONS,
                                      inbound_topic=topics.HUB_INBOUND, handler=handle)
        nodes = NodeClient(settings.province_url, settings.internal_token, settings.internal_http_timeout_s)
        ctx = HubContext(settings=settings, db=runtime.db, clock=clock, nodes=nodes)
        ctx_holder.append(ctx)

        async def cancel_overdue_transfers() -> None:
            async with UnitOfWork(ctx.db) as uow:
                if await transfers.cancel_overdue(ctx, uow):
                    await uow.commit()

        runtime.every("transfer-timeouts", settings.timeout_scan_interval_s, cancel_overdue_transfers)
        # Issue 12: the hub's own audit journal; its head is stored straight into its checkpoints.
        await audit.ensure_genesis(runtime.db, None)
        runtime.every("audit-checkpoint", settings.audit_checkpoint_interval_s,
                      audit_chain.hub_checkpointer(ctx).round)
        state["runtime"] = runtime
        app.state.ctx = ctx
        try:
            yield
        finally:
            await stop_runtime(runtime)
            await nodes.close()

    app, metrics = create_app("Yibao national hub", lifespan, readiness_checks(state))
    app.include_router(api.public)
    app.include_router(api.admin)
    app.include_router(api.internal)
    app.include_router(ops_api.router)
    app.include_router(dead_letters_ops_api.router)
    install_dead_letters(app, metrics, state, internal_routes=False)
    console.install(app)  # issue 14: the operator console at /console/
    return app
