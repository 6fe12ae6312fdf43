"""The internal dead-letter routes (internal token) of the nodes and the gateway, registered by one line in each
bootstrap (the hub registers only the host and the metric, see install_dead_letters):

- `GET /internal/v1/dead-letters[?state=PARKED|REPLAYED]` → `{"dead_letters": [item, ...]}`, items as
  shared/dead_letters.py `view` (no payload), oldest first.
- `POST /internal/v1/dead-letters/{n}:replay` → `{id, state, replayed, still_parked, error?}` (200, also when the
  message failed again and stays PARKED: `state` says so); 404 DEAD_LETTER_NOT_FOUND, 409
  DEAD_LETTER_ALREADY_REPLAYED, 409 DEAD_LETTER_BLOCKED, 503 DEAD_LETTER_REPLAY_UNAVAILABLE (the service consumes
  nothing or is not started). An `Idempotency-Key` is honoured as everywhere (run_idempotent).

The hub's operator routes (services/national_hub/entrypoints/dead_letters_ops_api.py) list and replay these
across the federation. `/metrics` gains `yibao_dead_letters_parked_total`: messages this process parked."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from shared import dead_letters
from shared.db import UnitOfWork
from shared.idempotency import run_idempotent
from shared.runtime import Runtime
from shared.web import ApiError, require_internal

router = APIRouter(prefix="/internal/v1/dead-letters", tags=["internal"], dependencies=[Depends(require_internal)])


class DeadLetterHost:
    """This service's dead letters, over the runtime its lifespan starts (so the routes can be registered
    before it exists)."""

    def __init__(self, state: Mapping[str, Runtime]) -> None:
        self._state = state

    def runtime(self) -> Runtime:
        runtime = self._state.get("runtime")
        if runtime is None:
            raise ApiError(503, "DEAD_LETTER_REPLAY_UNAVAILABLE", "the service is starting")
        return runtime

    @property
    def parked_total(self) -> int:
        runtime = self._state.get("runtime")
        return runtime.consumer_loop.parked_total if runtime is not None and runtime.consumer_loop else 0

    async def list(self, state: str | None) -> list[dict[str, Any]]:
        return await dead_letters.list_dead_letters(self.runtime().db, state)

    async def replay(self, dead_letter_id: int) -> dict[str, Any]:
        runtime = self.runtime()
        handler = runtime.consumer_loop.handler if runtime.consumer_loop is not None else None
        return await dead_letters.replay(runtime.db, handler, dead_letter_id)


class _ParkedCollector(Collector):
    def __init__(self, host: DeadLetterHost) -> None:
        self._host = host

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("yibao_dead_letters_parked", "Consumed messages parked as dead letters",
                                  value=self._host.parked_total)


def install_dead_letters(app: FastAPI, registry: CollectorRegistry, state: Mapping[str, Runtime], *,
                         internal_routes: bool = True) -> None:
    """The internal routes, the host the hub's operator routes use (`app.state.dead_letters`), the metric.
    The hub passes `internal_routes=False`: its operator routes read and replay its own dead letters directly,
    and nobody else asks the hub for them."""
    host = DeadLetterHost(state)
    app.state.dead_letters = host
    if internal_routes:
        app.include_router(router)
    registry.register(_ParkedCollector(host))


def host_of(request: Request) -> DeadLetterHost:
    host: DeadLetterHost = request.app.state.dead_letters
    return host


@router.get("")
async def list_dead_letters(request: Request, state: str | None = Query(None, json_schema_extra={  # parse_state
        "pattern": "^([Pp][Aa][Rr][Kk][Ee][Dd]|[Rr][Ee][Pp][Ll][Aa][Yy][Ee][Dd])?$"})) -> dict[str, Any]:
    """`state`: PARKED or REPLAYED in any case, empty for both; anything else → 422 INVALID_STATE."""
    return {"dead_letters": await host_of(request).list(state)}


@router.post("/{dead_letter_id}:replay")
async def replay_dead_letter(request: Request, dead_letter_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:
    host = host_of(request)

    async def replay() -> dict[str, Any]:
        return await host.replay(dead_letter_id)

    async def answer(_: UnitOfWork, outcome: dict[str, Any]) -> dict[str, Any]:
        return outcome

    # The replay runs its own units of work (one per message); only its answer is stored under the key.
    return await run_idempotent(request, host.runtime().db, "internal", answer, prepare=replay, status=200)
