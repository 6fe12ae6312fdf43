"""The one wiring function of the pharmacy gateway, used by `python -m services.pharmacy_gateway` and tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.pharmacy_gateway.adapters.federation_http import DirectoryClient, InternalHttp, ProvinceNodes
from services.pharmacy_gateway.config import GatewaySettings
from services.pharmacy_gateway.entrypoints import admin_api, pos_api
from services.pharmacy_gateway.service_layer.context import GatewayContext, Registry
from services.pharmacy_gateway.service_layer.exchange import forget_old_nonces
from shared import audit
from shared.clock import Clock, SystemClock
from shared.db import Database
from shared.dead_letters_api import install_dead_letters
from shared.runtime import Runtime, Wiring, fastapi_lifespan, readiness_checks
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@asynccontextmanager
async def gateway_context(settings: GatewaySettings, clock: Clock, db: Database) -> AsyncIterator[GatewayContext]:
    """The gateway's context over its open database: its clients of the hub's directory and of the province
    nodes (closed afterwards), the registry of institutions loaded, the audit journal's genesis (issue 12)."""
    directory = DirectoryClient(InternalHttp(settings.hub_url, settings.internal_token,
                                             settings.directory_call_timeout_s, settings.node_max_connections),
                                settings.directory_cache_ttl_s)
    nodes = ProvinceNodes(settings.province_url, settings.internal_token, settings.province_call_timeout_s,
                          settings.node_max_connections)
    try:
        registry = Registry()
        await registry.load(db)
        await audit.ensure_genesis(db, None)
        yield GatewayContext(settings=settings, db=db, clock=clock, directory=directory, nodes=nodes,
                             registry=registry)
    finally:
        await nodes.close()
        await directory.close()


def _jobs(runtime: Runtime, ctx: GatewayContext) -> None:
    settings = ctx.settings
    # Issue 12: the audit journal's head, checkpointed at the hub.
    runtime.every("audit-checkpoint", settings.audit_checkpoint_interval_s,
                  audit.Checkpointer(ctx.db, settings.service_name, audit.outbox_sender(ctx.source)).round)
    runtime.every("nonce-cleanup", settings.nonce_cleanup_interval_s, lambda: forget_old_nonces(ctx))
    if not ctx.db.inline:
        # Other replicas change institutions, sign-ins and the catalogue too (service_layer/context.py).
        runtime.every("registry-refresh", settings.registry_refresh_s, lambda: ctx.registry.refresh(ctx.db))


def bootstrap(settings: GatewaySettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The gateway's app. Its lifespan (shared/runtime.py service_lifespan) opens the database, builds the
    context (`gateway_context`) and starts the periodic jobs. No inbound topic: the gateway only publishes
    (cross-province settlements, to the hub)."""
    settings = settings or GatewaySettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}
    wiring = Wiring(service_name=settings.service_name, instance="gateway", client_id="gateway",
                    migrations=MIGRATIONS, context=lambda runtime: gateway_context(settings, clock, runtime.db),
                    jobs=_jobs)
    app, metrics = create_app("Yibao pharmacy gateway (national 两定机构 interface)",
                              fastapi_lifespan(settings, wiring, state), readiness_checks(state),
                              fast_routes=pos_api.ROUTES)
    app.include_router(admin_api.router)
    install_dead_letters(app, metrics, state)
    app.include_router(audit.internal_router(lambda: state["runtime"].db, settings.service_name, None))
    return app
