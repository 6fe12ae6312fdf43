"""launcher/speed_probe.py: the fixed work every bench report times, and how the report and summary say it."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import bench, speed_probe


def test_the_reference_work_is_the_same_work_every_time() -> None:
    assert speed_probe.reference_work(50) == speed_probe.reference_work(50)
    assert speed_probe.reference_work(50) != speed_probe.reference_work(51)


def test_a_probe_is_a_positive_time_in_ms() -> None:
    assert 0 < speed_probe.probe_ms(runs=2, rounds=200) < 10_000


def test_the_summary_line_gives_both_probes() -> None:
    report = {"machine_speed": speed_probe.speed_report(24.5, 31.0)}
    assert speed_probe.speed_line(report) == "machine speed probe: 24.5 ms before, 31.0 ms after (lower is faster)"
    assert speed_probe.speed_line({}) is None  # a report saved before the probe existed


def test_every_saved_report_carries_the_machine_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "repo_root", lambda: tmp_path)
    monkeypatch.setattr(bench, "federation_shape_report", lambda _home: {"backend": "sqlite"})
    monkeypatch.setattr(speed_probe, "probe_ms", lambda: 30.0)
    report: dict[str, object] = {"benchmark": "pos"}
    path = bench.save_report(report, "bench-pos.json", json_out=False, speed_before_ms=25.0)
    saved = path.read_text(encoding="utf-8")
    assert '"probe_ms_before": 25.0' in saved and '"probe_ms_after": 30.0' in saved
    # and in the report the bench prints its summary from
    assert speed_probe.speed_line(report) == "machine speed probe: 25.0 ms before, 30.0 ms after (lower is faster)"
