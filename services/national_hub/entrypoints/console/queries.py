"""The overview's own reads: what happened today (Asia/Shanghai) and whether each service answers. Everything
else the console shows comes from the operator API's code (ops_api / api route functions and the service layer
they call); these are the only questions no operator route answers yet."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.national_hub.adapters.ops_tables import AidFact
from services.national_hub.adapters.tables import HubTransfer
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.dead_letters import peers
from services.national_hub.service_layer.ops import month_of
from shared.clock import SHANGHAI
from shared.db import ReadView
from shared.tables import table

TRANSFERS = table(HubTransfer)
FACTS = table(AidFact)
# A service that does not answer its /readyz within this is shown as unreachable (the page must stay fast).
HEALTH_TIMEOUT_S = 1.0


def today_start(now: datetime) -> datetime:
    """Midnight today in Asia/Shanghai, as an aware datetime (the tables store UTC)."""
    local = now.astimezone(SHANGHAI)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


async def today(ctx: HubContext) -> dict[str, Any]:
    """Transfers the hub accepted today by state, and today's uses of mutual-aid money by kind."""
    now = ctx.clock.now()
    start = today_start(now)
    end = start + timedelta(days=1)
    async with ReadView(ctx.db) as view:
        by_state = (await view.execute(
            sa.select(TRANSFERS.c.state, sa.func.count().label("n"), sa.func.sum(TRANSFERS.c.amount_fen).label("fen"))
            .where(TRANSFERS.c.accepted_at >= start, TRANSFERS.c.accepted_at < end)
            .group_by(TRANSFERS.c.state))).all()
        # Facts of this month first (indexed), then today's among them.
        kind = sa.func.coalesce(FACTS.c.kind, sa.case((FACTS.c.use == "transfer", "transfer"), else_="quota_use"))
        uses = (await view.execute(
            sa.select(kind.label("kind"), FACTS.c.use, sa.func.count().label("n"),
                      sa.func.sum(FACTS.c.amount_fen).label("fen"))
            .where(FACTS.c.month == month_of(now), FACTS.c.at >= start, FACTS.c.at < end)
            .group_by(kind, FACTS.c.use).order_by(kind, FACTS.c.use))).all()
    transfers = [{"state": r.state, "count": int(r.n), "amount_fen": int(r.fen or 0)} for r in by_state]
    settlements = [{"kind": r.kind, "use": r.use, "count": int(r.n), "amount_fen": int(r.fen or 0)}
                   for r in uses if r.use != "transfer"]
    return {"day": start.strftime("%Y-%m-%d"), "transfers": transfers,
            "transfer_count": sum(t["count"] for t in transfers),
            "transfer_fen": sum(t["amount_fen"] for t in transfers),
            "settlements": settlements, "settlement_count": sum(s["count"] for s in settlements),
            "settlement_fen": sum(s["amount_fen"] for s in settlements)}


def _client(app: FastAPI) -> httpx.AsyncClient:
    """One client per hub process, kept: making one costs tens of milliseconds (more on a busy machine), which
    the overview would pay on every view; its pooled connections make each probe a round trip."""
    client: httpx.AsyncClient | None = getattr(app.state, "console_health_client", None)
    if client is None:
        client = httpx.AsyncClient(timeout=HEALTH_TIMEOUT_S)
        app.state.console_health_client = client
    return client


async def _own_readiness(app: FastAPI) -> tuple[bool, str, int | None]:
    """This hub process's own /readyz, asked in process (its URL may be HAProxy's, which picks any replica)."""
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path == "/readyz":
            response = await route.endpoint()
            ready = response.status_code == 200
            return ready, "就绪" if ready else "未就绪", _lag(orjson.loads(bytes(response.body))) if ready else None
    return True, "就绪", None


def _lag(body: Any) -> int | None:
    """The consumer lag a service's /readyz reports (messages fetched or waiting on its partitions, not applied)."""
    lag = body.get("consumer_lag") if isinstance(body, dict) else None
    return lag if isinstance(lag, int) else None


async def _probe(client: httpx.AsyncClient, url: str) -> tuple[bool, bool, str, float, int | None]:
    started = time.perf_counter()
    try:
        health = await client.get(f"{url}/healthz")
        ready = await client.get(f"{url}/readyz")
    except httpx.HTTPError:
        return False, False, "不可达", (time.perf_counter() - started) * 1000, None
    detail = "就绪" if ready.status_code == 200 else ready.json().get("error", {}).get("message", "未就绪")
    lag = _lag(ready.json()) if ready.status_code == 200 else None
    return health.status_code == 200, ready.status_code == 200, detail, (time.perf_counter() - started) * 1000, lag


async def health(app: FastAPI, ctx: HubContext) -> list[dict[str, Any]]:
    """Every service of the federation: the hub itself, the province nodes and the gateway, asked at once."""
    own_ready, own_detail, own_lag = await _own_readiness(app)
    rows: list[dict[str, Any]] = [{"service": "hub", "url": ctx.settings.hub_url, "healthy": True,
                                   "ready": own_ready, "detail": own_detail, "latency_ms": 0.0, "lag": own_lag}]
    others = peers(ctx.settings)
    answers = await asyncio.gather(*(_probe(_client(app), peer.url) for peer in others))
    for peer, (healthy, ready, detail, latency_ms, lag) in zip(others, answers, strict=True):
        rows.append({"service": peer.service, "url": peer.url, "healthy": healthy, "ready": ready,
                     "detail": detail, "latency_ms": latency_ms, "lag": lag})
    return rows
