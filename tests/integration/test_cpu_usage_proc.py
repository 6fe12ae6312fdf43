"""launcher/cpu_usage.py on this machine's /proc: the bench's own process is found and its CPU counted."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from launcher.cpu_usage import LOAD_GENERATOR, CpuWindow, take_snapshot, usage_report

pytestmark = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="/proc is Linux's")


def test_the_load_generator_spins_and_is_counted(tmp_path: Path) -> None:
    before = take_snapshot(tmp_path, with_postgresql=False)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = take_snapshot(tmp_path, with_postgresql=False)
    assert before is not None and after is not None
    assert after.ticks_by_pid[os.getpid()][0] == LOAD_GENERATOR
    report = usage_report(before, after, 1, "spin")
    assert report is not None
    # 0.3 s of CPU, counted in clock ticks (1/100 s here): at least a little less, never far more.
    assert 200 <= report["ms_per_operation"][LOAD_GENERATOR] <= 2000
    assert 0 < report["machine"]["cores_busy"] <= report["machine"]["cores"]


def test_a_window_reports_what_it_cost_from_where_it_was_opened(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIBAO_DATABASE_URL", raising=False)
    window = CpuWindow(tmp_path)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    report = window.report(3, "spin")
    assert report is not None and report["operations"] == 3 and report["operation"] == "spin"
    assert 200 / 3 <= report["ms_per_operation"][LOAD_GENERATOR] <= 2000 / 3
    assert "postgresql" not in report["ms_per_operation"]
