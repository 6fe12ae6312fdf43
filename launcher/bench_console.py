"""Benchmark of the operator console (issue 14: no page slower than 300 ms server-side with 100,000 transfers in
the hub). A benchmark, not a test: it prints each page's times and says which pages are over the budget.

    .venv/bin/python -m launcher.bench_console [--transfers 100000] [--rounds 5] [--database-url URL]

It builds a hub database of its own (a temporary SQLite file, or its own schema in the PostgreSQL server the URL
names, dropped afterwards), migrated by Alembic, and fills it as 100,000 credited cross-province transfers would
have: hub transfers with their hops, statistics facts spread over twelve months (a tenth of them today), clearing
obligations in closed windows and open ones, and some risk alerts. Then it drives the hub's real app in process
(no network, no Kafka: the time is the server's) and times every console page, signed in as an operator."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import AidFact, RiskAlert
from services.national_hub.adapters.tables import ClearingObligation, HubTransfer, TransferHop
from services.national_hub.bootstrap import MIGRATIONS, bootstrap
from services.national_hub.config import HubSettings
from services.national_hub.service_layer import ops
from services.national_hub.service_layer.context import HubContext
from shared.clock import SystemClock
from shared.db import UnitOfWork, drop_schemas, open_database
from shared.tables import table

BUDGET_MS = 300.0
PROVINCES = ["640000", "620000", "610000", "510000", "350000", "130000"]
USES = ["transfer", "pharmacy", "outpatient", "inpatient", "premium"]
CHUNK = 5_000
TOKEN = "bench-console-operator-token"


async def seed(ctx: HubContext, transfers: int) -> dict[str, Any]:
    now = ctx.clock.now()
    first = now - timedelta(days=365)
    step_s = (now - first).total_seconds() / transfers
    alerts = max(1, transfers // 1000)
    for start in range(0, transfers, CHUNK):
        rows, hops, facts, obligations = [], [], [], []
        for n in range(start, min(start + CHUNK, transfers)):
            # A tenth today (the overview's counters), the rest over the year (the statistics' months).
            at = now - timedelta(seconds=n % 3600) if n % 10 == 0 else first + timedelta(seconds=n * step_s)
            giver, receiver = PROVINCES[n % 6], PROVINCES[(n + 1 + n // 6 % 5) % 6]
            transfer_id = f"T{n:09d}"
            amount_fen = 100 + (n * 7919) % 200_000
            rows.append({"transfer_id": transfer_id, "binding_id": f"B{n % 5000}",
                         "giver_psn_no": f"P{giver}{n % 9000}", "giver_admdvs": giver,
                         "receiver_psn_no": f"P{receiver}{n % 7000}", "receiver_admdvs": receiver,
                         "amount_fen": amount_fen, "state": "CREDITED",
                         "accepted_at": at, "routed_at": at, "deadline_at": at + timedelta(seconds=60),
                         "decided_at": at})
            hops += [{"transfer_id": transfer_id, "hop": hop, "service": service, "at": at}
                     for hop, service in (("REQUESTED", f"node-{giver}"), ("ROUTED", "hub"),
                                          ("CREDITED", f"node-{receiver}"))]
            use = USES[n % 5]
            facts.append({"ref": f"F:{transfer_id}", "month": ops.month_of(at), "from_admdvs": giver,
                          "to_admdvs": receiver, "use": use, "person_key": f"P{receiver}{n % 7000}",
                          "amount_fen": amount_fen, "at": at,
                          "kind": "transfer" if use == "transfer" else "quota_use",
                          "scope": "cross_province", "payer_psn_no": f"P{giver}{n % 9000}"})
            obligations.append({"kind": "TRANSFER", "ref": f"TRANSFER:{transfer_id}", "debtor_admdvs": giver,
                                "creditor_admdvs": receiver, "amount_fen": amount_fen, "created_at": at,
                                "window_id": None})
        async with UnitOfWork(ctx.db) as uow:
            await uow.execute(sa.insert(table(HubTransfer)), rows)
            await uow.execute(sa.insert(table(TransferHop)), hops)
            await uow.execute(sa.insert(table(AidFact)), facts)
            await uow.execute(sa.insert(table(ClearingObligation)), obligations)
            await uow.commit()
        # Most obligations netted in earlier windows (a window closed every 20,000), the rest still open.
        if (start + CHUNK) % 20_000 == 0 and start + CHUNK < transfers:
            async with UnitOfWork(ctx.db) as uow:
                await ops.close_current_window(ctx, uow)
                await uow.commit()
    async with UnitOfWork(ctx.db) as uow:
        await uow.execute(sa.insert(table(RiskAlert)), [
            {"alert_id": f"A{n:06d}", "rule": "HIGH_FREQUENCY_TRANSFERS", "subject": f"P640000{n}",
             "ref": f"bench:{n}", "details_json": json.dumps({"count": 6, "transfer_id": f"T{n:09d}"}),
             "state": "OPEN" if n % 2 else "RESOLVED", "created_at": now - timedelta(minutes=n),
             "subject_json": json.dumps({"psn_no": f"P640000{n}", "name_masked": "王*明"})}
            for n in range(alerts)])
        await uow.commit()
    return {"transfers": transfers, "alerts": alerts}


async def run(transfers: int, rounds: int, database_url: str) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="yibao-bench-console-"))
    prefix = f"bench{secrets.token_hex(3)}_"
    settings = HubSettings(home=home, database_url=database_url, db_schema_prefix=prefix, operator_token=TOKEN,
                           provinces="", gateway_url="http://127.0.0.1:9")  # nothing listens on port 9
    clock = SystemClock()
    db = await open_database(settings, "hub", MIGRATIONS)
    try:
        ctx = HubContext(settings=settings, db=db, clock=clock)
        started = time.perf_counter()
        seeded = await seed(ctx, transfers)
        seed_s = time.perf_counter() - started
        app = bootstrap(settings, clock)
        app.state.ctx = ctx
        month = clock.now().strftime("%Y-%m")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub") as http:
            form = await http.get("/console/signin")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            assert csrf is not None
            signed_in = await http.post("/console/signin", data={"token": TOKEN, "csrf_token": csrf.group(1)})
            assert signed_in.status_code == 303, signed_in.text
            pages = {"总览": "/console/", "统计": "/console/stats", "统计(筛选)": "/console/stats?province=640000",
                     "统计 CSV": f"/console/stats.csv?from={month}&to={month}", "清算": "/console/clearing",
                     "风险预警": "/console/alerts", "预警详情": "/console/alerts/A000001",
                     "查询": "/console/lookup", "转账追踪": "/console/transfers/T000000042",
                     "审计": "/console/audit"}
            times: dict[str, list[float]] = {name: [] for name in pages}
            for _ in range(rounds):
                for name, path in pages.items():
                    t0 = time.perf_counter()
                    answer = await http.get(path)
                    times[name].append((time.perf_counter() - t0) * 1000)
                    assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            page = await http.get("/console/clearing/close")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            t0 = time.perf_counter()
            closed = await http.post("/console/clearing/close", data={"csrf_token": token.group(1)})
            close_ms = (time.perf_counter() - t0) * 1000
            assert closed.status_code == 303, closed.text
    finally:
        await db.dispose()
        if database_url:
            await drop_schemas(database_url, [f"{prefix}hub"])
    result = {"backend": "postgresql" if database_url else "sqlite", **seeded, "seed_s": round(seed_s, 1),
              "budget_ms": BUDGET_MS, "close_window_ms": round(close_ms, 1),
              "pages": {name: {"median_ms": round(statistics.median(ms), 1), "max_ms": round(max(ms), 1)}
                        for name, ms in times.items()}}
    result["over_budget"] = [name for name, page_times in result["pages"].items()
                             if page_times["median_ms"] > BUDGET_MS]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default="", help="PostgreSQL (postgresql+asyncpg://...); else SQLite")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.transfers, args.rounds, args.database_url))
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{result['backend']}: {result['transfers']:,} transfers, {result['alerts']} alerts "
              f"(seeded in {result['seed_s']} s); budget {BUDGET_MS:.0f} ms per page")
        for name, page_times in result["pages"].items():
            mark = "OVER" if name in result["over_budget"] else "ok"
            print(f"  {name:<10} median {page_times['median_ms']:>7.1f} ms   max {page_times['max_ms']:>7.1f} ms"
                  f"   {mark}")
        print(f"  window close (action, all open obligations netted): {result['close_window_ms']:.1f} ms")
    return 1 if result["over_budget"] else 0


if __name__ == "__main__":
    sys.exit(main())

