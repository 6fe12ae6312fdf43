"""`yibao demo` on a federation that is in its quiet hours: the refusal of the first transfer becomes the way to
run the stories now (the demo itself runs in tests/e2e, at any hour: its federation has no quiet hours)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from launcher.demo import Demo
from launcher.state import LaunchError


class _Refusing:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.response = httpx.Response(status, json=body)

    async def call_keyed(self, *_: Any) -> httpx.Response:
        return self.response


async def test_a_quiet_hours_refusal_says_how_to_run_the_demo_now() -> None:
    refusal = {"error": {"code": "TRANSFER_QUIET_HOURS", "message": "no transfers between 22:00 and 06:00"}}
    demo = Demo(_Refusing(422, refusal))  # type: ignore[arg-type]
    with pytest.raises(LaunchError) as raised:
        await demo.call(None, "POST", "/v1/transfers", {"binding_id": "B1", "amount_fen": 50000})  # type: ignore[arg-type]
    assert "YIBAO_TRANSFER_QUIET_HOURS= yibao up --fresh" in str(raised.value)


async def test_other_refusals_are_reported_as_they_came() -> None:
    refusal = {"error": {"code": "INSUFFICIENT_FUNDS", "message": "not enough"}}
    demo = Demo(_Refusing(422, refusal))  # type: ignore[arg-type]
    with pytest.raises(LaunchError, match=r"POST /v1/transfers refused: .*INSUFFICIENT_FUNDS"):
        await demo.call(None, "POST", "/v1/transfers", {})  # type: ignore[arg-type]
