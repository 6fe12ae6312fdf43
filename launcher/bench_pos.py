"""`yibao bench pos [--rate R] [--duration S] [--json]`: settles (2102) through the gateway's national interface
at a steady rate, open loop, as pharmacy tills would send them, and what they cost in time.

Measured: the HTTP round trip of each signed 2102 at the till (gateway: signature, nonce, message log, catalogue,
routing by ID card; the payer's home node: split and postings, stored answer; the gateway again: settlement
record and, across provinces, the clearing event in its outbox), from the first byte sent to the last byte
received, on this machine, with the federation and the load generator sharing its CPUs. Also: the achieved rate,
refusals, and that the payers' personal accounts went down by exactly what the answers say they paid. Payers
are spread over every running province; the pharmacy is in Chengdu, so most settlements are cross-province.
A warm-up of WARMUP_S at the same rate comes first and is not counted. Where the time went, under `cpu` (the
open loop) and `capacity.cpu` (the closed loop): launcher/cpu_usage.py.
The report goes to reports/bench-pos.json and stdout. The POS simulator's `load` mode runs the same loop."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from launcher import speed_probe, supervisor
from launcher.bench import percentile, save_report
from launcher.client import FederationClient
from launcher.cpu_usage import CpuWindow, summary_line
from launcher.loadgen import KeepAlivePool
from launcher.people import new_person
from launcher.pos_client import DEMO_CATALOGUE, Item, Payer, PosClient, PosFailed, dumps, ok
from launcher.state import LaunchError, database_backend, home_dir, resolve_operator_token
from services.pharmacy_gateway.domain.wire import CALL_SERVICE_PATH
from shared.money import yuan_to_fen

# Settles per second and p99 to meet, by database backend: SQLite's from the first POS issue, PostgreSQL's from
# issue 9 (one process each, on the 2-core machine the benches run on).
TARGETS = {"sqlite": (500.0, 20.0), "postgresql": (400.0, 50.0)}
BASKET = [Item("XC08CAA001A001", 1, "10.00")]  # 10 yuan of blood-pressure tablets, paid by personal account
PAYER_BALANCE_FEN = 100_000_000  # a million yuan each: never what limits a settle
PAYERS_PER_PROVINCE = 20
CAPACITY_TILLS = 8
MAX_IN_FLIGHT = 200  # connections of the lean client: no message ever waits for one
CAPACITY_DURATION_S = 10.0
# Not measured: connections, caches, and the broker's JIT come up to speed at the requested rate first, as in a
# federation that has been running for a while; then a pause lets anything queued drain.
WARMUP_S = 5.0
WARMUP_DRAIN_S = 1.0


@dataclass
class LoadResult:
    sent: int = 0
    shed: int = 0  # open loop: not sent because MAX_IN_FLIGHT answers were outstanding
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    acct_paid_fen: dict[str, int] = field(default_factory=dict)  # psn_no -> what the answers say accounts paid
    in_doubt: list[tuple[str, str]] = field(default_factory=list)  # (msgid, psn_no) answered "outcome unknown"

    @property
    def settled(self) -> int:
        return len(self.latencies_ms) - sum(self.refusals.values())

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        return {"sent": self.sent, "not_sent_saturated": self.shed, "settled": self.settled,
                "refused": dict(self.refusals),
                "achieved_rate_per_s": round(self.settled / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "latency_ms": {name: round(percentile(ordered, q), 2) for name, q in
                               (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))}
                | {"max": round(ordered[-1], 2) if ordered else math.nan}}


async def prepare_till(client: FederationClient, gateway_url: str, provinces: list[str], payers_per_province: int,
                       console: Console) -> tuple[PosClient, list[Payer], dict[str, str]]:
    """A Chengdu pharmacy, signed in, with the demo catalogue, and payers with ample personal accounts in every
    province; returns the till, the payers and their ID numbers by psn_no."""
    console.print(f"setting up a pharmacy and {payers_per_province * len(provinces)} payers …")
    await client.import_catalogue(DEMO_CATALOGUE)
    registration = await client.register_institution(f"P5101{int(time.time()) % 10**7:07d}", "成都压测药房", "510100")
    till = PosClient.registered(gateway_url, registration)
    await till.sign_in()
    payers: list[Payer] = []
    ids: dict[str, str] = {}
    for admdvs in provinces:
        people = [new_person(admdvs[:2] + "0100", personal_account_fen=PAYER_BALANCE_FEN)
                  for _ in range(payers_per_province)]
        result = await client.import_persons(admdvs, [p.import_body(False) for p in people])
        if result["rejected"]:
            raise LaunchError(f"importing bench payers into {admdvs} failed: {result['rejected'][:3]}")
        for person in people:
            payer = await till.payer("02", person.id_no)  # 1101, which also warms the directory cache
            payers.append(payer)
            ids[payer.psn_no] = person.id_no
    return till, payers, ids


class LeanTill:
    """The hot loop's transport: the till's own envelopes and x-tif signatures, sent through the lean
    keep-alive client (launcher/loadgen.py), so the bench measures the federation rather than httpx."""

    def __init__(self, till: PosClient, connections: int) -> None:
        self.till = till
        self.pool = KeepAlivePool(till.gateway_url, size=connections)

    async def send(self, envelope: dict[str, Any]) -> tuple[int, Any]:
        headers = {name: value for name, value in self.till.signed_headers().items() if name != "content-type"}
        # The envelope's Decimals become the JSON numbers pharmacy software sends (see pos_client.dumps).
        status, answer = await self.pool.post(CALL_SERVICE_PATH, dumps(envelope), headers)
        return status, orjson.loads(answer) if answer else None

    async def __aenter__(self) -> LeanTill:
        return self

    async def __aexit__(self, *_: object) -> None:
        # One pool per phase: between phases the gateway closes idle keep-alive connections.
        await self.pool.close()


async def settle_once(lean: LeanTill, payer: Payer, result: LoadResult, *, doubt_refusals: bool = False) -> None:
    """One 2102 as a careful till sends it: answered 0 → charged as answered; no answer or "outcome unknown" →
    in doubt (reversed afterwards with 2601, harmless for a settle that never took effect, money back for one
    that did). `doubt_refusals`: every other refusal is in doubt too (the chaos test, where a refusal may come
    from a replica that died halfway)."""
    envelope = lean.till.envelope("2102", lean.till.purchase(payer, BASKET))
    started = time.perf_counter()
    try:
        status, answer = await lean.send(envelope)
    except Exception as exc:  # the till's view: no answer at all
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.refusals[type(exc).__name__] += 1
        result.in_doubt.append((envelope["msgid"], payer.psn_no))
        return
    result.latencies_ms.append((time.perf_counter() - started) * 1000)
    if status != 200 or answer.get("infcode") != 0:
        err_msg = str(answer.get("err_msg", status))
        result.refusals["outcome unknown (timeout)" if "outcome is unknown" in err_msg else err_msg[:80]] += 1
        if doubt_refusals or "outcome is unknown" in err_msg:
            result.in_doubt.append((envelope["msgid"], payer.psn_no))
        return
    info = answer["output"]["setlinfo"]
    paid_fen = yuan_to_fen(info["acct_pay"]) + yuan_to_fen(info["acct_mulaid_pay"])
    result.acct_paid_fen[payer.psn_no] = result.acct_paid_fen.get(payer.psn_no, 0) + paid_fen


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


async def run_load(lean: LeanTill, payers: list[Payer], rate: float, duration_s: float, console: Console,
                   label: str = "2102 settles") -> LoadResult:
    """Open loop: message i leaves at t0 + i/rate whether or not earlier ones have been answered, so a slow
    gateway shows up as latency, not as a politely lower rate."""
    scheduled = max(1, round(rate * duration_s))
    result = LoadResult()
    tasks: list[asyncio.Task[None]] = []
    in_flight = [0]

    def answered(_: asyncio.Task[None]) -> None:
        in_flight[0] -= 1
        progress.advance(bar)

    t0 = time.perf_counter()
    with _progress(console) as progress:
        bar = progress.add_task(label, total=scheduled)
        for index in range(scheduled):
            delay_s = t0 + index / rate - time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            if in_flight[0] >= MAX_IN_FLIGHT:
                # Saturated: a till would not queue hundreds of unanswered messages (their signatures would go
                # stale); this one is counted as not sent, and the rate reached says what the federation did.
                result.shed += 1
                progress.advance(bar)
                continue
            in_flight[0] += 1
            result.sent += 1
            task = asyncio.create_task(settle_once(lean, payers[index % len(payers)], result))
            task.add_done_callback(answered)
            tasks.append(task)
        await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - t0
    return result


async def run_capacity(lean: LeanTill, payers: list[Payer], tills: int, duration_s: float,
                       console: Console) -> LoadResult:
    """Closed loop: `tills` tills each send their next 2102 as soon as the last is answered, for `duration_s`.
    What they settle per second is what this machine can do at all, whatever the target."""
    result = LoadResult()
    deadline = time.perf_counter() + duration_s

    async def till_loop(offset: int) -> None:
        index = offset
        while time.perf_counter() < deadline:
            result.sent += 1
            await settle_once(lean, payers[index % len(payers)], result)
            index += tills

    t0 = time.perf_counter()
    with _progress(console) as progress:
        progress.add_task(f"capacity: {tills} tills back to back for {duration_s:g} s", total=None)
        await asyncio.gather(*(till_loop(offset) for offset in range(tills)))
    result.elapsed_s = time.perf_counter() - t0
    return result


async def reverse_in_doubt(till: PosClient, result: LoadResult) -> int:
    """What a till does after "outcome unknown": 2601 for each such settle, so that the node and the gateway
    agree (nothing charged) whatever had happened. Returns how many reversals actually gave money back."""
    undone = 0
    for msgid, psn_no in result.in_doubt:
        undone += bool(ok(await till.reverse(msgid, "2102", psn_no))["undone"])
    return undone


async def account_balances_fen(till: PosClient, payers: list[Payer]) -> dict[str, int]:
    """Each payer's personal account as its home node reports it (1101)."""
    balances: dict[str, int] = {}
    for payer in payers:
        output = ok(await till.person(payer.cert_type, payer.cert_no))
        balances[payer.psn_no] = round(output["insuinfo"][0]["balc"] * 100)
    return balances


def accounts_match(before: dict[str, int], after: dict[str, int], result: LoadResult) -> bool:
    """Every payer's personal account went down by exactly what the answers said it paid: no settle lost,
    none applied twice."""
    return all(before[psn_no] - after[psn_no] == result.acct_paid_fen.get(psn_no, 0) for psn_no in before)


async def _bench(rate: float, duration_s: float, console: Console) -> dict[str, Any]:
    home = home_dir()
    provinces = supervisor.running_provinces(home)
    if not provinces:
        raise LaunchError("no federation is running: run `yibao up` first")
    client = FederationClient(resolve_operator_token(home), timeout_s=30)
    till: PosClient | None = None
    try:
        till, payers, _ = await prepare_till(client, client.gateway_url(), provinces, PAYERS_PER_PROVINCE, console)
        async with LeanTill(till, MAX_IN_FLIGHT) as lean:
            await run_load(lean, payers, rate, WARMUP_S, console, "warm-up (not measured)")
        await asyncio.sleep(WARMUP_DRAIN_S)
        before = await account_balances_fen(till, payers)
        cpu_window = CpuWindow(home)
        async with LeanTill(till, MAX_IN_FLIGHT) as lean:
            result = await run_load(lean, payers, rate, duration_s, console)
        cpu = cpu_window.report(result.settled, "settle")
        # No need to wait for late answers: a reversal at the node also stops an original still on its way.
        undone_by_reversal = await reverse_in_doubt(till, result)
        consistent = accounts_match(before, await account_balances_fen(till, payers), result)
        await asyncio.sleep(2.0)  # let a saturated federation drain before measuring what it can do
        cpu_window = CpuWindow(home)
        async with LeanTill(till, CAPACITY_TILLS) as lean:
            capacity = await run_capacity(lean, payers, CAPACITY_TILLS, CAPACITY_DURATION_S, console)
        capacity_cpu = cpu_window.report(capacity.settled, "settle")
    finally:
        if till is not None:
            await till.aclose()
        await client.aclose()
    summary = result.summary()
    p99 = summary["latency_ms"]["p99"]
    target_rate_per_s, target_p99_ms = TARGETS[database_backend()]
    return {
        "benchmark": "pos",
        "what": "signed 2102 settles through POST /fsi/api/rsfComIfsService/callService, open loop, measured at "
                "the till from first byte sent to last byte received; payer found by resident ID (02), personal "
                "account pays, money moves at the payer's home node; one Chengdu pharmacy, payers in "
                + ", ".join(provinces),
        "machine": _machine(),
        "requested_rate_per_s": rate,
        "duration_s": duration_s,
        "warmup_s": WARMUP_S,
        "payers": len(payers),
        **summary,
        "in_doubt_reversed": {"outcome_unknown": len(result.in_doubt), "reversal_gave_money_back": undone_by_reversal},
        "balances_match_answers": consistent,
        "capacity": {"what": f"closed loop: {CAPACITY_TILLS} tills each sending the next 2102 when the last is "
                             f"answered, {CAPACITY_DURATION_S:g} s", **capacity.summary(), "cpu": capacity_cpu},
        "cpu": cpu,
        "target": {"rate_per_s": target_rate_per_s, "p99_ms": target_p99_ms,
                   "met": bool(summary["achieved_rate_per_s"] >= target_rate_per_s * 0.98 and p99 < target_p99_ms
                               and not summary["refused"] and consistent)},
    }


def _machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def print_load(console: Console, summary: dict[str, Any]) -> None:
    latency = summary["latency_ms"]
    console.print(f"  sent {summary['sent']}, settled {summary['settled']} at {summary['achieved_rate_per_s']}/s; "
                  f"refused {summary['refused'] or 'none'}; not sent (saturated) {summary['not_sent_saturated']}")
    console.print(f"  latency ms p50 {latency['p50']:.1f}  p90 {latency['p90']:.1f}  p99 {latency['p99']:.1f}  "
                  f"p99.9 {latency['p999']:.1f}  max {latency['max']:.1f}")


def bench_pos(rate: float, duration_s: float, json_out: bool) -> int:
    console = Console(stderr=json_out)
    speed_before_ms = speed_probe.probe_ms()
    try:
        report = asyncio.run(_bench(rate, duration_s, console))
    except (LaunchError, PosFailed) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    path = save_report(report, "bench-pos.json", json_out=json_out, speed_before_ms=speed_before_ms)
    if json_out:
        return 0
    console.print(f"[bold]bench pos[/bold]: 2102 at {report['requested_rate_per_s']}/s for {report['duration_s']} s, "
                  f"{report['payers']} payers, {report['machine']['cpus']} CPUs")
    print_load(console, report)
    if cpu_line := summary_line(report.get("cpu")):
        console.print(f"  {cpu_line}")
    if speed := speed_probe.speed_line(report):
        console.print(f"  {speed}")
    doubt = report["in_doubt_reversed"]
    console.print(f"  outcome unknown: {doubt['outcome_unknown']}, each reversed by 2601 "
                  f"({doubt['reversal_gave_money_back']} had been charged and were refunded)")
    console.print(f"  personal accounts moved exactly as the answers said: {report['balances_match_answers']}")
    console.print(f"  capacity ({report['capacity']['what']}):")
    print_load(console, report["capacity"])
    if cpu_line := summary_line(report["capacity"].get("cpu")):
        console.print(f"  {cpu_line}")
    target = report["target"]
    console.print(f"  target ≥ {target['rate_per_s']:g}/s with p99 < {target['p99_ms']:g} ms: "
                  + ("[green]met[/green]" if target["met"] else "[red]not met[/red]"))
    console.print(f"  report: {path}")
    return 0
