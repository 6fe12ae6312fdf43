"""`yibao bench transfers --rate R --duration S [--json]`: open-loop load of cross-province transfers through
the running federation, with many givers (the daily limit allows only a few transfers each). The givers take
turns (transfer i is sent by giver i mod givers), so one giver's transfers are seconds apart, as people's are:
sent back to back, a giver's transfers queue on that giver's account row (the daily count is checked under its
lock), which measured the lock rather than the federation.

Measured: HTTP accept latency at the giver's node, and accept -> credited latency from the services' own
timestamps (`accepted_at` at the source, `credited_at` at the destination; one machine, one clock), achieved
rate, errors, and money conservation from every province's ledger (each ledger sums to zero, nothing left
in flight, clearing positions cancel out, citizen money unchanged), and where the time went (`cpu`, the CPU of
every process over the measured sending: launcher/cpu_usage.py). The report goes to reports/ and stdout.

A warm-up of `WARMUP_S` at the same rate comes first, as in `bench pos`: its transfers must end CREDITED or
REFUNDED and count for money and losses, but not for latency or rate. On a fresh federation the first seconds
measured connections being opened and PostgreSQL's first plans, made for empty tables (README, issue 9), not
the federation's steady state."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress

from launcher import speed_probe, supervisor
from launcher.client import FederationClient, Session
from launcher.cpu_usage import CpuWindow, summary_line
from launcher.loadgen import KeepAlivePool
from launcher.people import Person, new_person
from launcher.state import (
    LaunchError,
    federation_shape_report,
    home_dir,
    load_or_create_secrets,
    repo_root,
    resolve_operator_token,
)

TARGET_RATE_PER_S = 200.0
TARGET_P99_MS = 100.0
WARMUP_S = 5.0
WARMUP_DRAIN_S = 1.0  # the warm-up's last transfers settle before the measured ones start
SETUP_CONCURRENCY = 16
RELATIVES_PER_GIVER_GROUP = 10  # one parent per ten children keeps the kinship set small
AMOUNT_FEN = 10_000


@dataclass
class Giver:
    person: Person
    session: Session
    binding_id: str
    sent: int = 0


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


async def _gather_limited(concurrency: int, jobs: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def run(job: Any) -> Any:
        async with gate:
            return await job

    return await asyncio.gather(*(run(job) for job in jobs))


async def _setup(client: FederationClient, giver_admdvs: str, receiver_admdvs: str, givers_needed: int,
                 console: Console) -> list[Giver]:
    giver_pooling, receiver_pooling = giver_admdvs[:2] + "0100", receiver_admdvs[:2] + "0100"
    givers = [new_person(giver_pooling, personal_account_fen=5_000_000) for _ in range(givers_needed)]
    relatives = [new_person(receiver_pooling, employee=False)
                 for _ in range(math.ceil(givers_needed / RELATIVES_PER_GIVER_GROUP))]
    for start in range(0, len(givers), 1000):
        await client.import_persons(giver_admdvs, [p.import_body(False) for p in givers[start:start + 1000]])
    await client.import_persons(receiver_admdvs, [p.import_body(False) for p in relatives])
    parent_of = {g.id_no: relatives[i // RELATIVES_PER_GIVER_GROUP] for i, g in enumerate(givers)}
    await client.import_kinship([{"id_no_a": g.id_no, "id_no_b": parent_of[g.id_no].id_no, "relation": "parent"}
                                 for g in givers])
    relative_sessions = await _gather_limited(SETUP_CONCURRENCY, [
        client.login(r.id_no, r.name, face_label=r.face_label) for r in relatives])
    by_id = {r.id_no: s for r, s in zip(relatives, relative_sessions, strict=True)}
    for session in relative_sessions:
        (await client.call_keyed(session, "POST", "/v1/wallet:open")).raise_for_status()

    async def bind(person: Person) -> Giver:
        session = await client.login(person.id_no, person.name, face_label=person.face_label)
        parent = parent_of[person.id_no]
        created = await client.call_keyed(session, "POST", "/v1/bindings", {
            "relative_id_no": parent.id_no, "relative_name": parent.name, "relation": "parent"})
        created.raise_for_status()
        binding_id = created.json()["binding_id"]
        confirmed = await client.call_keyed(by_id[parent.id_no], "POST", f"/v1/bindings/{binding_id}:confirm")
        confirmed.raise_for_status()
        return Giver(person, session, binding_id)

    console.print(f"setting up {len(givers)} givers and {len(relatives)} relatives …")
    ready: list[Giver] = await _gather_limited(SETUP_CONCURRENCY, [bind(g) for g in givers])
    return ready


async def _wait_bindings_replicated(client: FederationClient, givers: list[Giver], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    for giver in givers[-5:]:  # replicas arrive in order per partition; sample the last ones set up
        while time.monotonic() < deadline:
            listed = (await client.call(giver.session, "GET", "/v1/bindings")).json()
            if any(b["binding_id"] == giver.binding_id and b["state"] == "ACTIVE" for b in listed):
                break
            await asyncio.sleep(0.1)


async def _ledger_totals(client: FederationClient, provinces: list[str], internal_token: str) -> dict[str, Any]:
    held = in_flight = clearing = 0
    balanced = True
    for admdvs in provinces:
        summary = await client.ledger_summary(admdvs, internal_token)
        totals = summary["totals_fen"]
        balanced = balanced and summary["sum_fen"] == 0 and summary["journal_balanced"]
        in_flight += totals.get("SYS:IN_FLIGHT", 0)
        clearing += totals.get("SYS:CLEARING", 0)
        held += totals.get("PA", 0) + totals.get("WALLET", 0) + totals.get("SYS:IN_FLIGHT", 0) \
            + totals.get("SYS:CLEARING", 0)
    return {"held_fen": held, "in_flight_fen": in_flight, "clearing_fen": clearing, "ledgers_balanced": balanced}


async def _run(rate: float, duration_s: float, console: Console, warmup_s: float = WARMUP_S) -> dict[str, Any]:
    home = home_dir()
    provinces = supervisor.running_provinces(home)
    if not provinces or len(provinces) < 2:
        raise LaunchError("bench needs a running federation with two provinces or more: run `yibao up` first")
    giver_admdvs, receiver_admdvs = ("640000", "620000") if {"640000", "620000"} <= set(provinces) \
        else (provinces[0], provinces[1])
    internal_token = load_or_create_secrets(home).internal_token
    client = FederationClient(resolve_operator_token(home), timeout_s=30)
    warmup_total = round(rate * warmup_s)
    total = max(1, round(rate * duration_s))
    max_per_day = int(os.environ.get("YIBAO_TRANSFER_MAX_PER_DAY", "3"))
    try:
        givers = await _setup(client, giver_admdvs, receiver_admdvs, math.ceil((warmup_total + total) / max_per_day),
                              console)
        await _wait_bindings_replicated(client, givers)
        before = await _ledger_totals(client, provinces, internal_token)
        pool = KeepAlivePool(client.node_url(giver_admdvs), size=64)
        try:
            warmup = await _send(pool, givers, rate, range(warmup_total), console, "warm-up (not measured)")
            if warmup_total:
                await asyncio.sleep(WARMUP_DRAIN_S)
            cpu_window = CpuWindow(home)
            sent = await _send(pool, givers, rate, range(warmup_total, warmup_total + total), console, "transfers")
            cpu = cpu_window.report(len(sent.accepted), "accepted transfer")
        finally:
            await pool.close()
        finals = await _collect_finals(client, givers, warmup.accepted | sent.accepted)
        e2e_ms = sorted(
            (datetime.fromisoformat(f["credited_at"]) - datetime.fromisoformat(f["accepted_at"])).total_seconds() * 1000
            for transfer_id, f in finals.items() if f["state"] == "CREDITED" and transfer_id in sent.accepted)
        states = Counter(f["state"] for transfer_id, f in finals.items() if transfer_id in sent.accepted)
        warmup_unsettled = len(warmup.accepted - set(finals))
        after = await _ledger_totals(client, provinces, internal_token)
    finally:
        await client.aclose()
    accepted, accept_ms, errors = sent.accepted, sent.accept_ms, sent.errors + warmup.errors
    accept_sorted = sorted(accept_ms)
    # Clearing is compared before and after: other activity (pharmacy payments) may have left positions.
    conserved = (after["held_fen"] == before["held_fen"] and after["in_flight_fen"] == before["in_flight_fen"]
                 and after["clearing_fen"] == before["clearing_fen"] and after["ledgers_balanced"])
    p99 = percentile(e2e_ms, 0.99)
    achieved = len(accepted) / sent.elapsed_s if sent.elapsed_s else 0.0
    return {
        "benchmark": "transfers",
        "what": "cross-province transfers, open loop: POST /v1/transfers at the giver's node, accept -> credited "
                "from service timestamps",
        "route": f"{giver_admdvs} -> hub -> {receiver_admdvs}",
        "requested_rate_per_s": rate,
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "warmup_sent": warmup_total,
        "givers": len(givers),
        "sent": total,
        "accepted": len(accepted),
        "achieved_accept_rate_per_s": round(achieved, 1),
        "final_states": dict(states),
        "lost": len(accepted) - sum(states.values()) + warmup_unsettled,
        "errors": dict(errors),
        "accept_http_ms": {"p50": percentile(accept_sorted, 0.5), "p95": percentile(accept_sorted, 0.95),
                           "p99": percentile(accept_sorted, 0.99)},
        "accept_to_credited_ms": {"p50": percentile(e2e_ms, 0.5), "p95": percentile(e2e_ms, 0.95), "p99": p99,
                                  "max": e2e_ms[-1] if e2e_ms else math.nan},
        "money": {"before": before, "after": after, "conserved": conserved},
        "cpu": cpu,
        "target": {"rate_per_s": TARGET_RATE_PER_S, "p99_ms": TARGET_P99_MS,
                   "met": bool(achieved >= TARGET_RATE_PER_S * 0.98 and p99 < TARGET_P99_MS and conserved
                               and not errors and states.get("CREDITED", 0) == len(accepted))},
    }


@dataclass
class _Sent:
    """One phase of sending: the transfers accepted, and how the sending went."""

    accepted: set[str]  # transfer ids
    accept_ms: list[float]
    errors: Counter[str]
    elapsed_s: float


async def _send(pool: KeepAlivePool, givers: list[Giver], rate: float, indexes: range, console: Console,
                label: str) -> _Sent:
    """Transfer i by giver i mod givers, open loop at `rate`; each giver sends 100 yuan."""
    accept_ms: list[float] = []
    errors: Counter[str] = Counter()
    accepted: set[str] = set()

    async def one(index: int) -> None:
        giver = givers[index % len(givers)]
        started = time.perf_counter()
        try:
            status, body = await pool.post_json(
                "/v1/transfers", {"binding_id": giver.binding_id, "amount_fen": AMOUNT_FEN},
                {"authorization": f"Bearer {giver.session.token}",
                 "idempotency-key": f"bench-{giver.person.id_no[-8:]}-{index}"})
        except Exception as exc:
            errors[type(exc).__name__] += 1
            return
        accept_ms.append((time.perf_counter() - started) * 1000)
        if status == 202 and isinstance(body, dict):
            accepted.add(body["transfer_id"])
        else:
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            errors[code or str(status)] += 1

    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(label, total=len(indexes))
        for sent, index in enumerate(indexes):
            delay = t0 + sent / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
            progress.advance(bar)
        await asyncio.gather(*tasks)
    return _Sent(accepted, accept_ms, errors, time.perf_counter() - t0)


async def _collect_finals(client: FederationClient, givers: list[Giver], transfer_ids: set[str],
                          timeout_s: float = 120) -> dict[str, dict[str, Any]]:
    """Wait until every accepted transfer is final at the giver's node; what never gets there is 'lost'."""
    finals: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    pending_givers = [g for g in givers]
    while pending_givers and time.monotonic() < deadline:
        lists = await _gather_limited(SETUP_CONCURRENCY, [
            client.call(g.session, "GET", "/v1/transfers?role=sent") for g in pending_givers])
        still: list[Giver] = []
        for giver, response in zip(pending_givers, lists, strict=True):
            open_here = False
            for transfer in response.json():
                if transfer["transfer_id"] not in transfer_ids:
                    continue
                if transfer["state"] in ("CREDITED", "REFUNDED"):
                    finals[transfer["transfer_id"]] = transfer
                else:
                    open_here = True
            if open_here:
                still.append(giver)
        pending_givers = still
        if pending_givers:
            await asyncio.sleep(0.5)
    return finals


def save_report(report: dict[str, Any], file_name: str, *, json_out: bool, speed_before_ms: float) -> Path:
    """Every bench's report: reports/<file_name> in the repository, and on stdout too with --json. Adds to
    `report`, for the printed summary too, the federation's shape it measured (backend, replicas, brokers) under
    "federation", and how fast the machine ran under "machine_speed" (`speed_before_ms`, taken before the bench
    started, and a probe now: launcher/speed_probe.py)."""
    report.update(federation=federation_shape_report(home_dir()),
                  machine_speed=speed_probe.speed_report(speed_before_ms, speed_probe.probe_ms()))
    reports = repo_root() / "reports"
    reports.mkdir(exist_ok=True)
    path = reports / file_name
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if json_out:
        print(json.dumps(report, ensure_ascii=False))
    return path


def bench_transfers(rate: float, duration_s: float, json_out: bool) -> int:
    console = Console(stderr=json_out)
    speed_before_ms = speed_probe.probe_ms()
    try:
        report = asyncio.run(_run(rate, duration_s, console))
    except LaunchError as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    path = save_report(report, "bench-transfers.json", json_out=json_out, speed_before_ms=speed_before_ms)
    if not json_out:
        _print(console, report, path)
    if not report["accepted"] and set(report["errors"]) == {"TRANSFER_QUIET_HOURS"}:
        # A newcomer benching at night would otherwise read a report of nothing but refusals.
        console.print("[red]error:[/red] every transfer was refused for the giver's quiet hours (by default "
                      "22:00-06:00 Asia/Shanghai); to bench now, start the federation without them: "
                      "YIBAO_TRANSFER_QUIET_HOURS= yibao up --fresh")
        return 1
    return 0


def _print(console: Console, report: dict[str, Any], path: Path) -> None:
    e2e, acc = report["accept_to_credited_ms"], report["accept_http_ms"]
    console.print(f"[bold]bench transfers[/bold] {report['route']}: {report['sent']} sent at "
                  f"{report['requested_rate_per_s']}/s for {report['duration_s']} s by {report['givers']} givers, "
                  f"after {report['warmup_sent']} in a {report['warmup_s']:g} s warm-up (not measured)")
    console.print(f"  accepted {report['accepted']} at {report['achieved_accept_rate_per_s']}/s; "
                  f"final {report['final_states']}; lost {report['lost']}; errors {report['errors'] or 'none'}")
    console.print(f"  accept (HTTP) ms p50 {acc['p50']:.1f} p95 {acc['p95']:.1f} p99 {acc['p99']:.1f}")
    console.print(f"  accept→credited ms p50 {e2e['p50']:.1f} p95 {e2e['p95']:.1f} p99 {e2e['p99']:.1f} "
                  f"max {e2e['max']:.1f}")
    money = report["money"]
    console.print(f"  money conserved: {money['conserved']} (held before {money['before']['held_fen']} fen, "
                  f"after {money['after']['held_fen']} fen, in flight {money['after']['in_flight_fen']})")
    if cpu_line := summary_line(report.get("cpu")):
        console.print(f"  {cpu_line}")
    if speed := speed_probe.speed_line(report):
        console.print(f"  {speed}")
    met = report["target"]["met"]
    console.print(f"  target {report['target']['rate_per_s']}/s with p99 < {report['target']['p99_ms']} ms: "
                  + ("[green]met[/green]" if met else "[red]not met[/red]"))
    console.print(f"  report: {path}")
