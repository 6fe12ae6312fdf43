"""`yibao bench transfers`' own verdicts, on a report made up here (the bench itself runs in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher import bench


def test_bench_transfers_in_quiet_hours_says_how_to_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Every transfer refused for quiet hours (a newcomer benching at night): exit 1, and the way out."""
    report = {"route": "640000 -> hub -> 620000", "sent": 10, "requested_rate_per_s": 10.0, "duration_s": 1.0,
              "warmup_s": 5.0, "warmup_sent": 50,
              "givers": 4, "accepted": 0, "achieved_accept_rate_per_s": 0.0, "final_states": {}, "lost": 0,
              "errors": {"TRANSFER_QUIET_HOURS": 10},
              "accept_http_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0},
              "accept_to_credited_ms": {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0},
              "money": {"conserved": True, "before": {"held_fen": 1}, "after": {"held_fen": 1, "in_flight_fen": 0}},
              "target": {"rate_per_s": 200.0, "p99_ms": 100.0, "met": False}}

    async def refused_run(*_: object) -> dict[str, object]:
        return report

    monkeypatch.setattr(bench, "_run", refused_run)
    monkeypatch.setattr(bench, "save_report", lambda *_args, **_kw: tmp_path / "bench-transfers.json")
    assert bench.bench_transfers(10, 1, json_out=False) == 1
    assert "YIBAO_TRANSFER_QUIET_HOURS= yibao up --fresh" in " ".join(capsys.readouterr().out.split())
    report["accepted"], report["errors"] = 10, {}
    assert bench.bench_transfers(10, 1, json_out=False) == 0
