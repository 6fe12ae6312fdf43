"""Periodic jobs start at a random phase, so services started together do not run them in step
(shared/runtime.py `Runtime.every`)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shared import runtime


def test_the_first_round_comes_between_half_and_one_and_a_half_intervals() -> None:
    delays_s = [runtime.first_round_delay_s(4.0) for _ in range(2000)]
    assert all(2.0 <= delay_s <= 6.0 for delay_s in delays_s)
    # Spread over the whole range, not one fixed phase.
    assert min(delays_s) < 2.5 and max(delays_s) > 5.5


async def test_after_its_first_round_a_job_waits_one_interval_between_rounds_even_after_a_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "first_round_delay_s", lambda interval_s: interval_s / 2)
    real_sleep = asyncio.sleep
    events: list[str] = []

    async def recorded_sleep(delay_s: float) -> None:
        events.append(f"sleep {delay_s:g}")
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    four_rounds = asyncio.Event()

    async def work() -> None:
        events.append("round")
        if events.count("round") == 2:
            raise RuntimeError("a failed round is logged; the next one comes all the same")
        if events.count("round") == 4:
            four_rounds.set()

    jobs = runtime.Runtime(db=cast(Any, None), producer=cast(Any, None), relay=cast(Any, None))  # jobs only
    jobs.every("test-job", 30.0, work)
    await asyncio.wait_for(four_rounds.wait(), timeout=5)
    jobs.tasks[0].cancel()
    assert events[:8] == ["sleep 15", "round", "sleep 30", "round", "sleep 30", "round", "sleep 30", "round"]
