"""shared/idempotency.py without HTTP: run_once over the store on SQLite. The route names the success status
(a number or a function of the result) and how the result is written; a key answers once, a refusal below 500
is remembered, a 5xx is not, another body under the same key is 409."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from shared.db import Database, UnitOfWork
from shared.errors import ApiError
from shared.idempotency import IdempotentRequest, run_once
from shared.idempotency_store import Answer, IdempotencyStore
from shared.messaging_tables import IdempotencyRecord
from shared.prepare import NOT_PREPARED, PrepareFirst
from shared.tables import table


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'idem.sqlite3'}")
    table(IdempotencyRecord).create(engine)
    database = Database(sync_engine=engine)
    yield database
    await database.dispose()


@dataclass(frozen=True)
class Opened:
    balance_fen: int
    created: bool


class Counter:
    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.calls = 0

    async def __call__(self, uow: UnitOfWork) -> object:
        self.calls += 1
        result = self.results.pop(0)
        if isinstance(result, ApiError):
            raise result
        return result


def call(key: str | None, body: bytes = b"{}") -> IdempotentRequest:
    return IdempotentRequest("p|POST|/v1/x", key, hashlib.sha256(body).hexdigest())


async def test_the_route_names_the_status_and_the_view_and_a_key_answers_once(db: Database) -> None:
    use_case = Counter(Opened(100, True), Opened(100, False))
    store = IdempotencyStore(db)

    async def run(request: IdempotentRequest) -> Answer:
        return await run_once(store, db, request, use_case, None,
                              status=lambda opened: 201 if opened.created else 200,
                              view=lambda opened: {"status": "OPEN", "balance_fen": opened.balance_fen})

    first = await run(call("k1"))
    assert (first.status, orjson.loads(first.body)) == (201, {"status": "OPEN", "balance_fen": 100})
    assert await run(call("k1")) == first and use_case.calls == 1  # the same key: the first answer
    second = await run(call("k2"))
    assert second.status == 200 and use_case.calls == 2
    with pytest.raises(ApiError) as reused:
        await run(call("k1", b'{"other": 1}'))
    assert reused.value.code == "IDEMPOTENCY_KEY_REUSED"


async def test_a_result_without_a_view_is_written_as_it_is(db: Database) -> None:
    answer = await run_once(IdempotencyStore(db), db, call(None), Counter(Opened(5, True)), None, status=202)
    assert (answer.status, orjson.loads(answer.body)) == (202, {"balance_fen": 5, "created": True})


async def test_a_refusal_is_remembered_and_a_5xx_is_not(db: Database) -> None:
    store = IdempotencyStore(db)
    refused = Counter(ApiError(409, "CONFLICT", "no"), {"never": True})
    first = await run_once(store, db, call("r"), refused, None, status=200)
    again = await run_once(store, db, call("r"), refused, None, status=200)
    assert first == again and first.status == 409 and refused.calls == 1
    unavailable = Counter(ApiError(503, "HUB_UNAVAILABLE", "later"), {"done": True})
    first = await run_once(store, db, call("u"), unavailable, None, status=200)
    retried = await run_once(store, db, call("u"), unavailable, None, status=200)
    assert (first.status, retried.status, unavailable.calls) == (503, 200, 2)
    assert orjson.loads(retried.body) == {"done": True}


async def test_prepare_runs_first_and_its_refusal_is_the_answer(db: Database) -> None:
    seen: list[object] = []

    async def use_case(uow: UnitOfWork, prepared: str) -> dict[str, str]:
        seen.append(prepared)
        return {"prepared": prepared}

    async def prepare() -> str:
        return "from the peer"

    answer = await run_once(IdempotencyStore(db), db, call(None), use_case, prepare, status=200)
    assert orjson.loads(answer.body) == {"prepared": "from the peer"} and seen == ["from the peer"]

    async def refusing() -> str:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding")

    answer = await run_once(IdempotencyStore(db), db, call(None), use_case, refusing, status=200)
    assert answer.status == 404 and seen == ["from the peer"]


async def test_a_retry_gets_the_first_answer_without_calling_prepare_again(db: Database) -> None:
    """Looking for a stored answer before `prepare` spares a retry the peer's call."""
    prepared: list[int] = []
    runs: list[int] = []

    async def prepare() -> int:
        prepared.append(len(prepared))
        return len(prepared)

    async def use_case(uow: UnitOfWork, value: int) -> dict[str, int]:
        runs.append(value)
        return {"run": len(runs)}

    answers = [await run_once(IdempotencyStore(db), db, call("k"), use_case, prepare, status=201)
               for _ in range(2)]
    assert [(a.status, orjson.loads(a.body)) for a in answers] == [(201, {"run": 1})] * 2
    assert runs == [1] and prepared == [0]


@pytest.mark.parametrize("needs_it", [False, True])
async def test_a_lazy_prepare_step_runs_only_when_the_use_case_asks(db: Database, needs_it: bool) -> None:
    """`lazy_prepare`: the use case runs first with NOT_PREPARED; only if it raises PrepareFirst does the step run,
    what the first try wrote is rolled back, and the use case runs again with the step's result. A retry with the
    key gets the first answer and calls nothing."""
    prepared: list[str] = []
    seen: list[Any] = []

    async def prepare() -> str:
        prepared.append("asked")
        return "from the peer"

    async def use_case(uow: UnitOfWork, value: Any) -> dict[str, Any]:
        seen.append(value)
        await store.remember(uow, "scratch", f"try-{len(seen)}", "h", Answer(200, b"{}"))  # a write of this try
        if needs_it and value is NOT_PREPARED:
            raise PrepareFirst()
        return {"value": None if value is NOT_PREPARED else value}

    store = IdempotencyStore(db)
    answers = [await run_once(store, db, call("k"), use_case, prepare, status=201, lazy_prepare=True)
               for _ in range(2)]
    expected = {"value": "from the peer" if needs_it else None}
    assert [(a.status, orjson.loads(a.body)) for a in answers] == [(201, expected)] * 2
    assert seen == ([NOT_PREPARED, "from the peer"] if needs_it else [NOT_PREPARED])
    assert prepared == (["asked"] if needs_it else [])
    first_try_kept = await store.get("scratch", "try-1")
    assert (first_try_kept is None) == needs_it  # the try that asked for the step left nothing
