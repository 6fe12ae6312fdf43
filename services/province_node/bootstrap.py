"""The one wiring function of a province node, used by `python -m services.province_node` and by tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.hub_client import HubClient
from services.province_node.config import NodeSettings
from services.province_node.entrypoints import (
    admin_api,
    binding_sync_api,
    citizen_api,
    confirmation_api,
    ec_token_api,
    medical_api,
    mutual_aid_api,
    pos_api,
)
from services.province_node.service_layer import housekeeping, messages, transfers
from services.province_node.service_layer.context import NodeContext
from shared import audit
from shared.clock import Clock, SystemClock
from shared.contracts import topics
from shared.db import UnitOfWork
from shared.dead_letters_api import install_dead_letters
from shared.logs import configure_logging
from shared.runtime import Runtime, readiness_checks, start_runtime, stop_runtime
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


def bootstrap(settings: NodeSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or NodeSettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.service_name, settings.log_level)
        hub = HubClient(settings.hub_url, settings.internal_token, settings.internal_http_timeout_s)
        ctx_holder: list[NodeContext] = []

        async def handle(uow: UnitOfWork, envelopes: list) -> None:  # type: ignore[type-arg]
            await messages.handle_batch(ctx_holder[0], uow, envelopes)

        runtime = await start_runtime(
            settings, instance=settings.db_instance, client_id=settings.service_name, migrations=MIGRATIONS,
            inbound_topic=topics.province_inbound(settings.province_admdvs), handler=handle)
        ctx = NodeContext(settings=settings, db=runtime.db, clock=clock, hub=hub, policy=settings.transfer_policy())
        ctx_holder.append(ctx)
        async with UnitOfWork(runtime.db) as uow:
            await ledger_repo.ensure_system_accounts(uow, clock.now())
            await uow.commit()
        # Issue 12: the audit journal (genesis on a database that had none) and its head at the hub.
        await audit.ensure_genesis(runtime.db, ledger_repo.AUDITED_LEDGER)
        runtime.every("audit-checkpoint", settings.audit_checkpoint_interval_s,
                      audit.Checkpointer(runtime.db, settings.service_name, audit.outbox_sender(ctx.source)).round)
        runtime.every("quota-year-end", settings.housekeeping_interval_s, lambda: housekeeping.close_past_years(ctx))
        runtime.every("premium-reservations", settings.housekeeping_interval_s,
                      lambda: housekeeping.expire_premium_reservations(ctx))
        runtime.every("transfer-acceptance", settings.acceptance_scan_interval_s,
                      lambda: transfers.expire_unaccepted(ctx))
        state["runtime"] = runtime
        app.state.ctx = ctx
        try:
            yield
        finally:
            await stop_runtime(runtime)
            await hub.close()

    app, metrics = create_app(f"Yibao province node {settings.province_admdvs}", lifespan,
                              readiness_checks(state), fast_routes=pos_api.ROUTES + medical_api.ROUTES)
    app.include_router(citizen_api.router)
    app.include_router(ec_token_api.router)
    app.include_router(admin_api.router)
    app.include_router(mutual_aid_api.router)
    app.include_router(mutual_aid_api.internal_router)
    app.include_router(medical_api.router)
    app.include_router(confirmation_api.router)
    app.include_router(binding_sync_api.internal_router)
    install_dead_letters(app, metrics, state)
    app.include_router(audit.internal_router(lambda: state["runtime"].db, settings.service_name,
                                             ledger_repo.AUDITED_LEDGER))
    return app
