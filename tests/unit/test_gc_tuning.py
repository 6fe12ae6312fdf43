"""A service started by `serve` freezes what it built at start and collects young objects less often; a service
run inside the test runner leaves the runner's collector alone (shared/runtime.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from shared import runtime


@pytest.fixture
def collector_restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_a_service_in_the_test_runner_leaves_the_collector_alone(collector_restored: None) -> None:
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    runtime._tune_gc_after_start()
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen


def test_a_served_service_freezes_its_start_and_collects_less_often(collector_restored: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_tune_gc_at_start", True)
    built_at_start = [{"route": n} for n in range(1000)]
    runtime._tune_gc_after_start()
    assert gc.get_threshold() == runtime.GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(built_at_start)
    assert runtime.GC_THRESHOLDS[0] > 700  # CPython's default
