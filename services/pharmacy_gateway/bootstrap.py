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
from shared.dead_letters_api import install_dead_letters
from shared.logs import configure_logging
from shared.runtime import Runtime, readiness_checks, start_runtime, stop_runtime
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def bootstrap(settings: GatewaySettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level)
        # No inbound topic: the gateway only publishes (cross-province settlements, to the hub).
        runtime = await start_runtime(settings, instance="gateway", client_id="gateway", migrations=MIGRATIONS,
                                      inbound_topic=None, handler=None)
        directory = DirectoryClient(InternalHttp(settings.hub_url, settings.internal_token,
                                                 settings.directory_call_timeout_s, settings.node_max_connections),
                                    settings.directory_cache_ttl_s)
        nodes = ProvinceNodes(settings.province_url, settings.internal_token, settings.province_call_timeout_s,
                              settings.node_max_connections)
        registry = Registry()
        await registry.load(runtime.db)
        ctx = GatewayContext(settings=settings, db=runtime.db, clock=clock, directory=directory, nodes=nodes,
                             registry=registry)

        # Issue 12: the audit journal and its head at the hub.
        await audit.ensure_genesis(runtime.db, None)
        runtime.every("audit-checkpoint", settings.audit_checkpoint_interval_s,
                      audit.Checkpointer(runtime.db, settings.service_name, audit.outbox_sender(ctx.source)).round)
        runtime.every("nonce-cleanup", settings.nonce_cleanup_interval_s, lambda: forget_old_nonces(ctx))
        if not runtime.db.inline:
            # Other replicas change institutions, sign-ins and the catalogue too (service_layer/context.py).
            runtime.every("registry-refresh", settings.registry_refresh_s, lambda: registry.load(runtime.db))
        state["runtime"] = runtime
        app.state.ctx = ctx
        try:
            yield
        finally:
            await stop_runtime(runtime)
            await nodes.close()
            await directory.close()

    app, metrics = create_app("Yibao pharmacy gateway (national 两定机构 interface)", lifespan,
                              readiness_checks(state), fast_routes=pos_api.ROUTES)
    app.include_router(admin_api.router)
    install_dead_letters(app, metrics, state)
    app.include_router(audit.internal_router(lambda: state["runtime"].db, settings.service_name, None))
    return app
