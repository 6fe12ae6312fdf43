"""Where a bench's time goes: the CPU each process of this machine used over the measured window, read from
/proc (Linux), and how busy the machine's cores were.

Processes are named as `yibao status` names them (`hub`, `hub.1`, `node-640000.2`, `kafka.1`, `haproxy`), plus
PostgreSQL's processes when the federation runs on PostgreSQL (every backend on this machine, whichever
database it serves) and the bench itself (`load generator`). The report gives CPU milliseconds per operation by
service (replicas summed), which drifts less between sittings than latency does on this shared machine, and
the cores each process kept busy. Without /proc (not Linux) the benches leave the section out."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.state import database_backend, read_pid_files

PROC = Path("/proc")
LOAD_GENERATOR = "load generator"
POSTGRESQL = "postgresql"
PROVINCE_NODES = "province nodes"
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is inside user already).
_IDLE_FIELDS = (3, 4)
_STEAL_FIELD = 7
_SUMMED_FIELDS = 8


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU ticks (user + system, every thread) by process label, and the machine's /proc/stat line."""

    taken_at_s: float  # time.monotonic()
    ticks_by_pid: dict[int, tuple[str, int]]  # pid -> (label, ticks)
    machine_ticks: tuple[int, ...]


def take_snapshot(home: Path, *, with_postgresql: bool) -> CpuSnapshot | None:
    """The CPU used so far by the federation's processes (from the launcher's pid files), PostgreSQL's when
    asked, and this process. None where /proc cannot be read."""
    if not (PROC / "stat").exists():
        return None
    labels = {record.pid: record.name for record in read_pid_files(home)}
    labels[os.getpid()] = LOAD_GENERATOR
    if with_postgresql:
        for entry in PROC.iterdir():
            if entry.name.isdigit() and _comm(int(entry.name)) == "postgres":
                labels.setdefault(int(entry.name), POSTGRESQL)
    ticks_by_pid = {}
    for pid, label in labels.items():
        ticks = _process_ticks(pid)
        if ticks is not None:
            ticks_by_pid[pid] = (label, ticks)
    return CpuSnapshot(time.monotonic(), ticks_by_pid, _machine_ticks())


class CpuWindow:
    """A bench's measured window, opened where it is made: its first snapshot is taken now (PostgreSQL's processes
    included when the federation runs on PostgreSQL), `report` takes the last and says what the window cost."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._with_postgresql = database_backend() == "postgresql"
        self._before = take_snapshot(home, with_postgresql=self._with_postgresql)

    def report(self, operations: int, operation: str) -> dict[str, Any] | None:
        after = take_snapshot(self._home, with_postgresql=self._with_postgresql)
        return usage_report(self._before, after, operations, operation)


def usage_report(before: CpuSnapshot | None, after: CpuSnapshot | None, operations: int, operation: str,
                 *, ticks_per_s: int | None = None, cores: int | None = None) -> dict[str, Any] | None:
    """What the window between two snapshots cost: CPU ms per `operation` by service (replicas summed, largest
    first), the cores each process kept busy, and the machine's busy cores and CPU steal. A process that started
    inside the window counts whole; one that ended inside it is not seen."""
    if before is None or after is None or operations <= 0:
        return None
    ticks_per_s = ticks_per_s or os.sysconf("SC_CLK_TCK")
    cores = cores or os.cpu_count() or 1
    window_s = after.taken_at_s - before.taken_at_s
    if window_s <= 0:
        return None
    cpu_s_by_process: dict[str, float] = defaultdict(float)
    for pid, (label, ticks) in after.ticks_by_pid.items():
        earlier = before.ticks_by_pid.get(pid)
        used = ticks - earlier[1] if earlier is not None and earlier[0] == label else ticks
        cpu_s_by_process[label] += max(used, 0) / ticks_per_s
    cpu_s_by_service: dict[str, float] = defaultdict(float)
    cpu_s_by_kind: dict[str, float] = defaultdict(float)
    for label, cpu_s in cpu_s_by_process.items():
        cpu_s_by_service[service_of(label)] += cpu_s
        cpu_s_by_kind[kind_of(service_of(label))] += cpu_s
    machine = [b - a for a, b in zip(before.machine_ticks, after.machine_ticks, strict=True)]
    all_ticks = sum(machine[:_SUMMED_FIELDS]) or 1  # a window shorter than a tick: nothing busy, nothing stolen
    idle_ticks = sum(machine[i] for i in _IDLE_FIELDS) if any(machine) else all_ticks
    total_cpu_s = sum(cpu_s_by_service.values())
    return {
        "what": f"CPU (user + system) of each process on this machine over the measured window, from /proc; "
                f"ms per {operation}",
        "window_s": round(window_s, 1),
        "operation": operation,
        "operations": operations,
        "ms_per_operation": {
            "total": round(total_cpu_s * 1000 / operations, 2),
            **{service: round(cpu_s * 1000 / operations, 2)
               for service, cpu_s in sorted(cpu_s_by_service.items(), key=lambda item: -item[1])},
        },
        "ms_per_operation_by_kind": {kind: round(cpu_s * 1000 / operations, 2)
                                     for kind, cpu_s in sorted(cpu_s_by_kind.items(), key=lambda item: -item[1])},
        "cores_busy_by_process": {label: round(cpu_s / window_s, 3)
                                  for label, cpu_s in sorted(cpu_s_by_process.items(), key=lambda item: -item[1])},
        "machine": {
            "cores": cores,
            "cores_busy": round(cores * (all_ticks - idle_ticks) / all_ticks, 2),
            "steal_pct": round(100 * machine[_STEAL_FIELD] / all_ticks, 1),
        },
    }


def summary_line(cpu: dict[str, Any] | None, kinds_shown: int = 6) -> str | None:
    """One line of a bench's printed summary: the CPU per operation, its largest kinds of process, the
    machine."""
    if not cpu:
        return None
    total = cpu["ms_per_operation"]["total"]
    largest = ", ".join(f"{kind} {ms:g}" for kind, ms in list(cpu["ms_per_operation_by_kind"].items())[:kinds_shown])
    machine = cpu["machine"]
    return (f"CPU per {cpu['operation']}: {total:g} ms ({largest}); {machine['cores_busy']:g} of "
            f"{machine['cores']} cores busy, steal {machine['steal_pct']:g}%")


def kind_of(service: str) -> str:
    """`node-640000` → `province nodes`: every province's node together, the other services as they are."""
    return PROVINCE_NODES if service.startswith("node-") else service


def service_of(label: str) -> str:
    """`node-640000.2` → `node-640000`: a replica's service."""
    name, _, replica = label.rpartition(".")
    return name if name and replica.isdigit() else label


def _process_ticks(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # After the command name in parentheses (which may itself hold spaces): state, then utime and stime are the
    # 12th and 13th fields.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _comm(pid: int) -> str:
    try:
        return (PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return ""


def _machine_ticks() -> tuple[int, ...]:
    first = (PROC / "stat").read_text().splitlines()[0].split()
    return tuple(int(value) for value in first[1:1 + _SUMMED_FIELDS])
