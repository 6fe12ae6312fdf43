"""launcher/cpu_usage.py: what a bench's window cost, by service, from two snapshots of /proc's counters."""

from __future__ import annotations

from launcher.cpu_usage import LOAD_GENERATOR, CpuSnapshot, service_of, summary_line, usage_report

TICKS_PER_S = 100
# /proc/stat's first eight fields: user nice system idle iowait irq softirq steal.
MACHINE_BEFORE = (1000, 0, 200, 5000, 10, 0, 5, 20)


def snapshot(at_s: float, ticks: dict[int, tuple[str, int]], machine: tuple[int, ...]) -> CpuSnapshot:
    return CpuSnapshot(taken_at_s=at_s, ticks_by_pid=ticks, machine_ticks=machine)


def test_replicas_sum_into_their_service_and_the_largest_comes_first() -> None:
    before = snapshot(0.0, {1: ("hub.1", 100), 2: ("hub.2", 100), 3: ("node-640000", 0), 4: (LOAD_GENERATOR, 50)},
                      MACHINE_BEFORE)
    # 10 s: hub.1 used 3 s, hub.2 1 s, the node 6 s, the bench 1 s; and the machine's counters move.
    after = snapshot(10.0, {1: ("hub.1", 400), 2: ("hub.2", 200), 3: ("node-640000", 600), 4: (LOAD_GENERATOR, 150)},
                     (2300, 0, 400, 5300, 20, 0, 25, 120))
    report = usage_report(before, after, 1000, "settle", ticks_per_s=TICKS_PER_S, cores=2)
    assert report is not None
    assert report["ms_per_operation"] == {"total": 11.0, "node-640000": 6.0, "hub": 4.0, LOAD_GENERATOR: 1.0}
    assert report["ms_per_operation_by_kind"] == {"province nodes": 6.0, "hub": 4.0, LOAD_GENERATOR: 1.0}
    assert list(report["cores_busy_by_process"]) == ["node-640000", "hub.1", "hub.2", LOAD_GENERATOR]
    assert report["cores_busy_by_process"]["hub.1"] == 0.3
    assert report["window_s"] == 10.0 and report["operations"] == 1000 and report["operation"] == "settle"
    # 1,930 ticks over the window, 310 of them idle or waiting on I/O, 100 stolen by the host.
    assert report["machine"] == {"cores": 2, "cores_busy": round(2 * 1620 / 1930, 2), "steal_pct": 5.2}


def test_a_process_started_in_the_window_counts_whole_and_a_reused_pid_is_not_subtracted() -> None:
    before = snapshot(0.0, {7: ("postgresql", 500)}, MACHINE_BEFORE)
    after = snapshot(2.0, {7: ("node-620000.1", 40), 8: ("postgresql", 60)},
                     tuple(value + 100 for value in MACHINE_BEFORE))
    report = usage_report(before, after, 10, "transfer", ticks_per_s=TICKS_PER_S, cores=2)
    assert report is not None
    assert report["ms_per_operation"] == {"total": 100.0, "postgresql": 60.0, "node-620000": 40.0}
    assert report["ms_per_operation_by_kind"] == {"postgresql": 60.0, "province nodes": 40.0}


def test_nothing_to_report_without_both_snapshots_or_without_operations() -> None:
    one = snapshot(0.0, {}, MACHINE_BEFORE)
    assert usage_report(None, one, 10, "settle") is None
    assert usage_report(one, None, 10, "settle") is None
    assert usage_report(one, snapshot(1.0, {}, MACHINE_BEFORE), 0, "settle") is None
    assert summary_line(None) is None


def test_summary_line_puts_every_province_node_together() -> None:
    before = snapshot(0.0, {1: ("node-640000", 0), 2: ("node-620000.2", 0), 3: ("gateway", 0)}, MACHINE_BEFORE)
    after = snapshot(1.0, {1: ("node-640000", 20), 2: ("node-620000.2", 20), 3: ("gateway", 30)}, MACHINE_BEFORE)
    line = summary_line(usage_report(before, after, 100, "settle", ticks_per_s=TICKS_PER_S, cores=2))
    assert line is not None and "(province nodes 4, gateway 3); 0 of 2 cores busy, steal 0%" in line


def test_service_of_drops_only_a_replica_number() -> None:
    assert service_of("node-640000.2") == "node-640000"
    assert service_of("kafka.3") == "kafka"
    assert service_of("hub") == "hub"
    assert service_of(LOAD_GENERATOR) == LOAD_GENERATOR


def test_summary_line_names_the_total_the_largest_services_and_the_machine() -> None:
    before = snapshot(0.0, {1: ("gateway", 0), 2: ("postgresql", 0)}, MACHINE_BEFORE)
    after = snapshot(1.0, {1: ("gateway", 20), 2: ("postgresql", 30)}, tuple(value + 10 for value in MACHINE_BEFORE))
    line = summary_line(usage_report(before, after, 100, "settle", ticks_per_s=TICKS_PER_S, cores=2))
    assert line is not None
    assert line.startswith("CPU per settle: 5 ms (postgresql 3, gateway 2);")
    assert "steal 12.5%" in line
