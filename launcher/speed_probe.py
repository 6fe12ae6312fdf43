"""How fast this machine's cores run right now: a fixed piece of CPU work, timed, in every bench report.

The benches run on a shared virtual machine whose speed drifts, by minutes and by days: on 2026-12-03 the same
code gave a closed loop of 377 settles/s in one hour and 655/s in another (README, "Targets"). So each report
carries this probe (`machine_speed`), timed before the bench starts and after it ended, with no load of its own
running (the federation idles). Lower is faster. A slow probe says the run met a slow or busy machine and
should be repeated. A fast one does not make two runs comparable: six runs of the same code with probes of
21-25 ms cost 5.85 to 7.95 ms of CPU a settle (docs/performance-log.md), a drift this small loop does not see.

The work is the kind every service does per message, in pure Python on one core: JSON out and in, SHA-256,
dict and integer work. A probe is the best of several runs, so one run that lost its core to a neighbour does
not count."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

ROUNDS = 4_000  # 21-36 ms a run in the reports of 2026-12-03 on the 2-core bench machine
RUNS = 5


def reference_work(rounds: int = ROUNDS) -> str:
    """The fixed work: a chain of digests over small JSON messages. Returns the last digest, so that nothing of
    it can be skipped."""
    digest = b""
    carried_fen = 0
    for index in range(rounds):
        message = {"msgid": f"H51010600001{index:018d}", "infno": "2102",
                   "input": {"psn_no": str(index * 7919), "medfee_fen": index * 37 % 100_000, "insutype": "310"}}
        body = json.dumps(message, sort_keys=True, separators=(",", ":"))
        parsed = json.loads(body)
        carried_fen = (carried_fen + parsed["input"]["medfee_fen"]) % 1_000_000_007
        digest = hashlib.sha256(digest + body.encode() + carried_fen.to_bytes(8, "big")).digest()
    return digest.hex()


def probe_ms(runs: int = RUNS, rounds: int = ROUNDS) -> float:
    """The fastest of `runs` runs of the reference work, in milliseconds."""
    fastest_s = float("inf")
    for _ in range(runs):
        started_s = time.perf_counter()
        reference_work(rounds)
        fastest_s = min(fastest_s, time.perf_counter() - started_s)
    return round(fastest_s * 1000, 1)


def speed_report(before_ms: float, after_ms: float) -> dict[str, Any]:
    """The report's `machine_speed` section."""
    return {"what": f"a fixed piece of CPU work (JSON and SHA-256 in pure Python, {ROUNDS} messages), the fastest "
                    f"of {RUNS} runs, timed before the bench and after it; ms, lower is faster",
            "probe_ms_before": before_ms, "probe_ms_after": after_ms}


def speed_line(report: dict[str, Any]) -> str | None:
    """One line for the bench's printed summary, or None where the report has no probe."""
    speed = report.get("machine_speed")
    if not speed:
        return None
    return (f"machine speed probe: {speed['probe_ms_before']} ms before, {speed['probe_ms_after']} ms after "
            f"(lower is faster)")
