"""`yibao bench hospital [--visits-rate 100] [--stays-rate 10] [--duration 30] [--json]`: hospital and clinic
settlement through the gateway's national interface, open loop, as hospital software would send it (issue 11,
point 8).

Outpatient visits: 2201 → 2204 (5 fee lines) → 2207 at a Chengdu clinic (level 1); inpatient stays: 2401 →
2301 (40 fee lines) → 2402 → 2304 at a Chengdu hospital (level 3), beside them. Payers are spread over every
running province (most settlements are cross-province: the fund's share under the payer's home policy, the
Sichuan catalogue, money moving at the home node). Measured at the HIS: the HTTP round trip of each 2207 and
2304, first byte sent to last byte received, on this machine, with the federation and the load generator
sharing its CPUs. Checked afterwards: each payer's personal account went down by exactly what the answers say
it paid, and each payer's accumulators at the home node (the year's fund paid per setting, the outpatient
deductible used) are exactly the sums of the answers' hifp_pay and act_pay_dedc. A warm-up of WARMUP_S comes
first and is not counted. Target on this machine: 2207 p99 under 30 ms and 2304 p99 under 60 ms at 100
visits/s with 10 stays/s. The report goes to reports/bench-hospital.json and stdout."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from rich.console import Console

from launcher import speed_probe, supervisor
from launcher.bench import percentile, save_report
from launcher.bench_pos import _machine
from launcher.client import FederationClient
from launcher.cpu_usage import CpuWindow, summary_line
from launcher.loadgen import KeepAlivePool
from launcher.people import new_person
from launcher.pos_client import (
    HOSPITAL_CATALOGUE,
    Fee,
    HisClient,
    Payer,
    PosFailed,
    dumps,
    import_medical_catalogue,
    ok,
    register_medical_institution,
    total,
)
from launcher.state import LaunchError, home_dir, resolve_operator_token
from services.pharmacy_gateway.domain.wire import CALL_SERVICE_PATH
from shared.clock import SHANGHAI
from shared.db import ReadView, open_database
from shared.money import yuan_to_fen
from shared.settings import ServiceSettings

TARGET_VISITS_PER_S = 100.0
TARGET_STAYS_PER_S = 10.0
TARGET_2207_P99_MS = 30.0
TARGET_2304_P99_MS = 60.0
PAYERS_PER_PROVINCE = 20
PAYER_BALANCE_FEN = 100_000_000
WARMUP_S = 5.0
MAX_IN_FLIGHT = 300
# An outpatient batch of 5 lines (甲类 consult and test, 乙类 test, 甲类 drug, 丙类 device): 143.00.
VISIT_FEES = [Fee("001101000010000", 1, "20.00"), Fee("002201000010000", 1, "25.00"),
              Fee("002202000020000", 1, "50.00"), Fee("XA10BAA001A001", 2, "9.00"), Fee("ZZ0000000301", 1, "30.00")]


def stay_fees() -> list[Fee]:
    """40 fee lines of a week's stay (bed with a price ceiling, rounds, drugs 甲/乙, tests, a 丙类 device)."""
    fees: list[Fee] = []
    for day in range(7):
        fees += [Fee("001103000010000", 1, "60.00"), Fee("001201000010000", 1, "20.00"),
                 Fee("XJ01DDA201B002", 2, "35.00"), Fee("XB05BBS001B001", 2, "8.50")]
        if day % 2 == 0:
            fees.append(Fee("XJ01FAA091B001", 1, "48.50"))
        if day < 5:
            fees.append(Fee("002201000010000", 1, "25.00"))
    fees += [Fee("002202000020000", 1, "50.00"), Fee("ZZ0000000301", 1, "30.00")]
    return fees[:40]


class LeanHis(HisClient):
    """A HIS whose messages go through the benches' lean keep-alive client (launcher/loadgen.py), so that the
    bench measures the federation rather than httpx."""

    pool: KeepAlivePool

    async def call(self, infno: str, payload: dict[str, Any], *, msgid: str | None = None,
                   insuplc_admdvs: str = "") -> dict[str, Any]:
        envelope = self.envelope(infno, payload, msgid=msgid, insuplc_admdvs=insuplc_admdvs)
        headers = {name: value for name, value in self.signed_headers().items() if name != "content-type"}
        status, answer = await self.pool.post(CALL_SERVICE_PATH, dumps(envelope), headers)
        body: dict[str, Any] = orjson.loads(answer) if answer else {}
        if status != 200:
            raise PosFailed(body, status)
        return body


@dataclass
class Sums:
    acct_fen: int = 0
    fund_fen: dict[str, int] = field(default_factory=dict)  # setting -> hifp_pay summed
    outpatient_deductible_fen: int = 0


@dataclass
class Phase:
    visits: int = 0
    stays: int = 0
    shed: int = 0
    elapsed_s: float = 0.0
    ms_2207: list[float] = field(default_factory=list)
    ms_2304: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    sums: dict[str, Sums] = field(default_factory=dict)  # psn_no -> what the answers say

    def took(self, payer: Payer, info: dict[str, Any], setting: str) -> None:
        sums = self.sums.setdefault(payer.psn_no, Sums())
        sums.acct_fen += yuan_to_fen(info["acct_pay"]) + yuan_to_fen(info["acct_mulaid_pay"])
        sums.fund_fen[setting] = sums.fund_fen.get(setting, 0) + yuan_to_fen(info["hifp_pay"])
        if setting == "outpatient":
            sums.outpatient_deductible_fen += yuan_to_fen(info["act_pay_dedc"])

    def summary(self) -> dict[str, Any]:
        def latency(values: list[float]) -> dict[str, float]:
            ordered = sorted(values)
            return {name: round(percentile(ordered, q), 2) for name, q in
                    (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))} | {"max": round(ordered[-1], 2) if ordered else 0}

        return {"visits_settled": len(self.ms_2207), "stays_settled": len(self.ms_2304),
                "visits_rate_per_s": round(len(self.ms_2207) / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "stays_rate_per_s": round(len(self.ms_2304) / self.elapsed_s, 1) if self.elapsed_s else 0.0,
                "not_sent_saturated": self.shed, "refused": dict(self.refusals),
                "latency_2207_ms": latency(self.ms_2207), "latency_2304_ms": latency(self.ms_2304)}


async def _visit(his: LeanHis, payer: Payer, phase: Phase) -> None:
    try:
        mdtrt_id = ok(await his.register(payer))["data"]["mdtrt_id"]
        ok(await his.upload(mdtrt_id, payer.psn_no, "B1", VISIT_FEES))
        started = time.perf_counter()
        answer = await his.settle_visit(payer, mdtrt_id, "B1", total(VISIT_FEES))
        phase.ms_2207.append((time.perf_counter() - started) * 1000)
        phase.took(payer, ok(answer)["setlinfo"], "outpatient")
    except PosFailed as failed:
        phase.refusals[str(failed.response.get("err_msg"))[:80]] += 1
    except Exception as exc:  # the HIS's view: no answer at all
        phase.refusals[type(exc).__name__] += 1


async def _stay(his: LeanHis, free: asyncio.Queue[Payer], phase: Phase) -> None:
    payer = await free.get()  # one open admission per person: a payer is taken while admitted
    try:
        fees = stay_fees()
        mdtrt_id = ok(await his.admit(payer))["result"]["mdtrt_id"]
        ok(await his.upload_stay(mdtrt_id, payer.psn_no, fees))
        ok(await his.discharge(mdtrt_id, payer.psn_no, payer.insutype))
        started = time.perf_counter()
        answer = await his.settle_stay(payer, mdtrt_id, total(fees))
        phase.ms_2304.append((time.perf_counter() - started) * 1000)
        phase.took(payer, ok(answer)["setlinfo"], "inpatient")
    except PosFailed as failed:
        phase.refusals[str(failed.response.get("err_msg"))[:80]] += 1
    except Exception as exc:
        phase.refusals[type(exc).__name__] += 1
    finally:
        free.put_nowait(payer)


async def run_phase(clinic: LeanHis, hospital: LeanHis, visit_payers: list[Payer], free: asyncio.Queue[Payer],
                    visits_rate: float, stays_rate: float, duration_s: float, console: Console,
                    label: str) -> Phase:
    """Open loop: visit i starts at t0 + i/visits_rate and stay j at t0 + j/stays_rate, answered or not."""
    phase = Phase()
    tasks: list[asyncio.Task[None]] = []
    events = sorted([(i / visits_rate, "visit", i) for i in range(max(1, round(visits_rate * duration_s)))]
                    + [(j / stays_rate, "stay", j) for j in range(round(stays_rate * duration_s))])
    console.print(f"{label}: {visits_rate:g} visits/s and {stays_rate:g} stays/s for {duration_s:g} s …")
    t0 = time.perf_counter()
    for offset_s, kind, index in events:
        delay_s = t0 + offset_s - time.perf_counter()
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        if sum(not task.done() for task in tasks[-MAX_IN_FLIGHT:]) >= MAX_IN_FLIGHT:
            phase.shed += 1
            continue
        if kind == "visit":
            phase.visits += 1
            tasks.append(asyncio.create_task(_visit(clinic, visit_payers[index % len(visit_payers)], phase)))
        else:
            phase.stays += 1
            tasks.append(asyncio.create_task(_stay(hospital, free, phase)))
    await asyncio.gather(*tasks)
    phase.elapsed_s = time.perf_counter() - t0
    return phase


async def _institution(client: FederationClient, code: str, name: str, kind: str, hosp_lv: str) -> LeanHis:
    registration = await register_medical_institution(client.http, client.gateway_url(), client.operator_token,
                                                       code, name, "510100", kind=kind, hosp_lv=hosp_lv)
    his = LeanHis.registered(client.gateway_url(), registration)
    his.pool = KeepAlivePool(client.gateway_url(), size=MAX_IN_FLIGHT)
    await his.sign_in()
    return his


async def _payers(client: FederationClient, his: HisClient, provinces: list[str], per_province: int) -> list[Payer]:
    payers: list[Payer] = []
    for admdvs in provinces:
        people = [new_person(admdvs[:2] + "0100", personal_account_fen=PAYER_BALANCE_FEN) for _ in range(per_province)]
        result = await client.import_persons(admdvs, [p.import_body(False) for p in people])
        if result["rejected"]:
            raise LaunchError(f"importing bench payers into {admdvs} failed: {result['rejected'][:3]}")
        for person in people:
            payers.append(await his.payer("02", person.id_no))  # 1101, which also warms the directory cache
    return payers


async def _balances_fen(his: HisClient, payers: list[Payer]) -> dict[str, int]:
    return {payer.psn_no: yuan_to_fen(ok(await his.person(payer.cert_type, payer.cert_no))["insuinfo"][0]["balc"])
            for payer in payers}


async def _accumulators(payers: list[Payer]) -> dict[tuple[str, str], tuple[int, int]]:
    """(psn_no, setting) -> (fund paid, deductible used) this year, read from each home node's database."""
    year = datetime.now(SHANGHAI).year
    found: dict[tuple[str, str], tuple[int, int]] = {}
    by_province: dict[str, list[str]] = {}
    for payer in payers:
        by_province.setdefault(payer.insuplc_admdvs, []).append(payer.psn_no)
    table = sa.table("medical_accumulators", sa.column("psn_no"), sa.column("year"), sa.column("setting"),
                     sa.column("fund_paid_fen"), sa.column("deductible_used_fen"))
    for admdvs, psn_nos in by_province.items():
        database = await open_database(ServiceSettings(home=home_dir()), f"node_{admdvs}")
        try:
            async with ReadView(database) as view:
                rows = await view.execute(sa.select(table).where(table.c.psn_no.in_(psn_nos), table.c.year == year))
                for row in rows:
                    found[(row.psn_no, row.setting)] = (int(row.fund_paid_fen), int(row.deductible_used_fen))
        finally:
            await database.dispose()
    return found


def _consistent(before: dict[str, int], after: dict[str, int], accumulated: dict[tuple[str, str], tuple[int, int]],
                phases: list[Phase]) -> tuple[bool, bool]:
    """(balances moved exactly as answered, accumulators are exactly the answers' sums) over every phase."""
    totals: dict[str, Sums] = {}
    for phase in phases:
        for psn_no, sums in phase.sums.items():
            into = totals.setdefault(psn_no, Sums())
            into.acct_fen += sums.acct_fen
            into.outpatient_deductible_fen += sums.outpatient_deductible_fen
            for setting, fen in sums.fund_fen.items():
                into.fund_fen[setting] = into.fund_fen.get(setting, 0) + fen
    balances = all(before[psn_no] - after[psn_no] == totals.get(psn_no, Sums()).acct_fen for psn_no in before)
    accumulators = all(
        accumulated.get((psn_no, setting), (0, 0))[0] == sums.fund_fen.get(setting, 0)
        for psn_no, sums in totals.items() for setting in ("outpatient", "inpatient")) and all(
        accumulated.get((psn_no, "outpatient"), (0, 0))[1] == sums.outpatient_deductible_fen
        for psn_no, sums in totals.items())
    return balances, accumulators


async def _bench(visits_rate: float, stays_rate: float, duration_s: float, console: Console) -> dict[str, Any]:
    home = home_dir()
    provinces = supervisor.running_provinces(home)
    if not provinces:
        raise LaunchError("no federation is running: run `yibao up` first")
    client = FederationClient(resolve_operator_token(home), timeout_s=30)
    clinic = hospital = None
    try:
        await import_medical_catalogue(client.http, client.gateway_url(), client.operator_token, HOSPITAL_CATALOGUE)
        stamp = f"{int(time.time()) % 10**7:07d}"
        clinic = await _institution(client, f"H5101{stamp}", "成都压测社区医院", "clinic", "1")
        hospital = await _institution(client, f"H5102{stamp}", "成都压测三甲医院", "hospital", "3")
        console.print(f"setting up {2 * PAYERS_PER_PROVINCE * len(provinces)} payers in {', '.join(provinces)} …")
        visit_payers = await _payers(client, clinic, provinces, PAYERS_PER_PROVINCE)
        stay_payers = await _payers(client, hospital, provinces, PAYERS_PER_PROVINCE)
        free: asyncio.Queue[Payer] = asyncio.Queue()
        for payer in stay_payers:
            free.put_nowait(payer)
        everyone = visit_payers + stay_payers
        before = await _balances_fen(clinic, everyone)
        warmup = await run_phase(clinic, hospital, visit_payers, free, visits_rate, stays_rate, WARMUP_S, console,
                                 "warm-up (not measured)")
        await asyncio.sleep(1.0)
        cpu_window = CpuWindow(home)
        phase = await run_phase(clinic, hospital, visit_payers, free, visits_rate, stays_rate, duration_s, console,
                                "measured")
        cpu = cpu_window.report(len(phase.ms_2207) + len(phase.ms_2304), "visit or stay settled (2207 or 2304)")
        after = await _balances_fen(clinic, everyone)
        accumulated = await _accumulators(everyone)
        balances_ok, accumulators_ok = _consistent(before, after, accumulated, [warmup, phase])
    finally:
        for his in (clinic, hospital):
            if his is not None:
                await his.pool.close()
                await his.aclose()
        await client.aclose()
    summary = phase.summary()
    met_rate = summary["visits_rate_per_s"] >= visits_rate * 0.98 and summary["stays_rate_per_s"] >= stays_rate * 0.9
    return {
        "benchmark": "hospital",
        "what": "signed 2201 → 2204 (5 lines) → 2207 outpatient visits and 2401 → 2301 (40 lines) → 2402 → 2304 "
                "stays through POST /fsi/api/rsfComIfsService/callService, open loop; latency of 2207 and 2304 at "
                "the HIS, first byte sent to last byte received; a Chengdu clinic (level 1) and hospital (level "
                "3); payers in " + ", ".join(provinces) + " (money moves at their home nodes)",
        "machine": _machine(),
        "requested": {"visits_per_s": visits_rate, "stays_per_s": stays_rate, "duration_s": duration_s,
                      "warmup_s": WARMUP_S},
        "payers": len(everyone),
        **summary,
        "balances_match_answers": balances_ok,
        "accumulators_match_answers": accumulators_ok,
        "cpu": cpu,
        "target": {"visits_per_s": TARGET_VISITS_PER_S, "stays_per_s": TARGET_STAYS_PER_S,
                   "p99_2207_ms": TARGET_2207_P99_MS, "p99_2304_ms": TARGET_2304_P99_MS,
                   "met": bool(met_rate and summary["latency_2207_ms"]["p99"] < TARGET_2207_P99_MS
                               and summary["latency_2304_ms"]["p99"] < TARGET_2304_P99_MS and not summary["refused"]
                               and balances_ok and accumulators_ok)},
    }


def bench_hospital(visits_rate: float, stays_rate: float, duration_s: float, json_out: bool) -> int:
    console = Console(stderr=json_out)
    speed_before_ms = speed_probe.probe_ms()
    try:
        report = asyncio.run(_bench(visits_rate, stays_rate, duration_s, console))
    except (LaunchError, PosFailed) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 1
    path = save_report(report, "bench-hospital.json", json_out=json_out, speed_before_ms=speed_before_ms)
    if json_out:
        return 0
    requested = report["requested"]
    console.print(f"[bold]bench hospital[/bold]: {requested['visits_per_s']:g} visits/s and "
                  f"{requested['stays_per_s']:g} stays/s for {requested['duration_s']:g} s, {report['payers']} "
                  f"payers, {report['machine']['cpus']} CPUs")
    console.print(f"  settled {report['visits_settled']} visits ({report['visits_rate_per_s']}/s) and "
                  f"{report['stays_settled']} stays ({report['stays_rate_per_s']}/s); refused "
                  f"{report['refused'] or 'none'}; not sent (saturated) {report['not_sent_saturated']}")
    for infno, key in (("2207", "latency_2207_ms"), ("2304", "latency_2304_ms")):
        latency = report[key]
        console.print(f"  {infno} latency ms p50 {latency['p50']:.1f}  p90 {latency['p90']:.1f}  "
                      f"p99 {latency['p99']:.1f}  max {latency['max']:.1f}")
    console.print(f"  personal accounts moved exactly as the answers said: {report['balances_match_answers']}")
    console.print(f"  accumulators (fund paid, deductible used) equal the answers' sums: "
                  f"{report['accumulators_match_answers']}")
    if cpu_line := summary_line(report.get("cpu")):
        console.print(f"  {cpu_line}")
    if speed := speed_probe.speed_line(report):
        console.print(f"  {speed}")
    met = report["target"]["met"]
    console.print(f"  target {TARGET_VISITS_PER_S:g} visits/s + {TARGET_STAYS_PER_S:g} stays/s with 2207 p99 < "
                  f"{TARGET_2207_P99_MS:g} ms and 2304 p99 < {TARGET_2304_P99_MS:g} ms: "
                  + ("[green]met[/green]" if met else "[red]not met[/red]"))
    console.print(f"  report: {path}")
    return 0
