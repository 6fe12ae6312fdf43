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
from shared.db import Database, UnitOfWork
from shared.dead_letters_api import install_dead_letters
from shared.runtime import Runtime, Wiring, fastapi_lifespan, readiness_checks
from shared.web import create_app

MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@asynccontextmanager
async def node_context(settings: NodeSettings, clock: Clock, db: Database,
                       hub: HubClient | None = None) -> AsyncIterator[NodeContext]:
    """The node's context over its open database: the hub client (given, or built from the settings, and
    closed afterwards either way), the transfer policy, and what must exist before anything is served (the
    system accounts, the audit journal's genesis)."""
    hub = hub or HubClient(settings.hub_url, settings.internal_token, settings.internal_http_timeout_s)
    try:
        async with UnitOfWork(db) as uow:
            await ledger_repo.ensure_system_accounts(uow, clock.now())
            await uow.commit()
        # Issue 12: the audit journal (genesis on a database that had none).
        await audit.ensure_genesis(db, ledger_repo.AUDITED_LEDGER)
        yield NodeContext(settings=settings, db=db, clock=clock, hub=hub, policy=settings.transfer_policy())
    finally:
        await hub.close()


def _jobs(runtime: Runtime, ctx: NodeContext) -> None:
    settings = ctx.settings
    # Issue 12: the audit journal's head, checkpointed at the hub.
    runtime.every("audit-checkpoint", settings.audit_checkpoint_interval_s,
                  audit.Checkpointer(ctx.db, settings.service_name, audit.outbox_sender(ctx.source)).round)
    runtime.every("quota-year-end", settings.housekeeping_interval_s, lambda: housekeeping.close_past_years(ctx))
    runtime.every("premium-reservations", settings.housekeeping_interval_s,
                  lambda: housekeeping.expire_premium_reservations(ctx))
    runtime.every("system-balances", settings.system_fold_interval_s,
                  lambda: housekeeping.fold_system_balances(ctx))
    runtime.every("transfer-acceptance", settings.acceptance_scan_interval_s,
                  lambda: transfers.expire_unaccepted(ctx))


def bootstrap(settings: NodeSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The node's app. Its lifespan (shared/runtime.py service_lifespan) opens the database, builds the context
    (`node_context`), then starts the consumer (messages.EVENT_HANDLERS) and the periodic jobs. In-process tests
    run no lifespan: they build the context with `node_context` and set `app.state.ctx`."""
    settings = settings or NodeSettings()
    clock = clock or SystemClock(settings.clock_offset_s)
    state: dict[str, Runtime] = {}
    wiring = Wiring(service_name=settings.service_name, instance=settings.db_instance,
                    client_id=settings.service_name, migrations=MIGRATIONS,
                    context=lambda runtime: node_context(settings, clock, runtime.db),
                    inbound_topic=topics.province_inbound(settings.province_admdvs),
                    handlers=messages.EVENT_HANDLERS, jobs=_jobs)
    app, metrics = create_app(f"Yibao province node {settings.province_admdvs}",
                              fastapi_lifespan(settings, wiring, state), readiness_checks(state),
                              fast_routes=pos_api.ROUTES + medical_api.ROUTES)
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
