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
from shared.db import Database, UnitOfWork
from shared.dead_letters_api import install_dead_letters
from shared.runtime import Runtime, Wiring, fastapi_lifespan, readiness_checks
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@asynccontextmanager
async def hub_context(settings: HubSettings, clock: Clock, db: Database,
                      nodes: NodeClient | None = None) -> AsyncIterator[HubContext]:
    """The hub's context over its open database: the node client (given, or built from the settings, and
    closed afterwards either way), and the audit journal's genesis (issue 12)."""
    nodes = nodes or NodeClient(settings.province_url, settings.internal_token, settings.internal_http_timeout_s)
    try:
        await audit.ensure_genesis(db, None)
        yield HubContext(settings=settings, db=db, clock=clock, nodes=nodes)
    finally:
        await nodes.close()


def _jobs(runtime: Runtime, ctx: HubContext) -> None:
    async def cancel_overdue_transfers() -> None:
        async with UnitOfWork(ctx.db) as uow:
            if await transfers.cancel_overdue(ctx, uow):
                await uow.commit()

    runtime.every("transfer-timeouts", ctx.settings.timeout_scan_interval_s, cancel_overdue_transfers)
    # Issue 12: the hub's own audit journal; its head is stored straight into its checkpoints.
    runtime.every("audit-checkpoint", ctx.settings.audit_checkpoint_interval_s,
                  audit_chain.hub_checkpointer(ctx).round)


def bootstrap(settings: HubSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The hub's app. Its lifespan (shared/runtime.py service_lifespan) opens the database, builds the context
    (`hub_context`), then starts the consumer (messages.EVENT_HANDLERS) and the periodic jobs. In-process tests
    run no lifespan: they build the context and set `app.state.ctx`."""
    settings = settings or HubSettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}
    wiring = Wiring(service_name=settings.service_name, instance="hub", client_id="hub", migrations=MIGRATIONS,
                    context=lambda runtime: hub_context(settings, clock, runtime.db),
                    inbound_topic=topics.HUB_INBOUND, handlers=messages.EVENT_HANDLERS, jobs=_jobs)
    app, metrics = create_app("Yibao national hub", fastapi_lifespan(settings, wiring, state),
                              readiness_checks(state))
    app.include_router(api.public)
    app.include_router(api.admin)
    app.include_router(api.internal)
    app.include_router(ops_api.router)
    app.include_router(dead_letters_ops_api.router)
    install_dead_letters(app, metrics, state, internal_routes=False)
    console.install(app)  # issue 14: the operator console at /console/
    return app
