"""`Idempotency-Key` for state-changing HTTP calls (the contract): same key + same body -> the original answer,
same status and body; same key + another body -> 409 IDEMPOTENCY_KEY_REUSED. The answer is stored in the same
transaction as the change it describes, so a crash can never leave a change without its answer.

Which answers are remembered: every success, and every refusal below 500 (it changed nothing, and a retry
must hear the same). A 5xx (a peer this service needed did not answer) is not: it says nothing about the
request, and the client's retry under the same key must get a real answer.

Three parts: the entrypoint's (`IdempotentRequest.read`: the key, the scope and the body's hash from the HTTP
request), the store (shared/idempotency_store.py), and `run_once`, which runs a use case at most once per key.
The use case returns its result; the route names the success status and, if the result is not the body
itself, how it is written (`view`); a refusal is an ApiError (DomainError) raised by the use case."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import orjson
from fastapi import Request
from fastapi.responses import Response

from shared.db import Database, UnitOfWork, run_retrying
from shared.errors import ApiError
from shared.idempotency_store import Answer, IdempotencyStore, Remembered
from shared.prepare import NOT_PREPARED, PrepareFirst

R = TypeVar("R")
P = TypeVar("P")
MAX_KEY_CHARS = 200


@dataclass(frozen=True)
class IdempotentRequest:
    scope: str  # principal | method | path: a key is the caller's own, per route
    key: str | None  # None: no Idempotency-Key, the request simply runs
    request_hash: str

    @classmethod
    async def read(cls, request: Request, principal: str) -> IdempotentRequest:
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= MAX_KEY_CHARS):
            raise ApiError(422, "INVALID_IDEMPOTENCY_KEY", f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")
        return cls(f"{principal}|{request.method}|{request.url.path}", key,
                   hashlib.sha256(await request.body()).hexdigest())


@overload
async def run_idempotent(request: Request, db: Database, principal: str,
                         use_case: Callable[[UnitOfWork], Awaitable[R]], prepare: None = None, *,
                         status: int | Callable[[R], int], view: Callable[[R], Any] | None = None,
                         lazy_prepare: bool = False) -> Response: ...


@overload
async def run_idempotent(request: Request, db: Database, principal: str,
                         use_case: Callable[[UnitOfWork, P], Awaitable[R]], prepare: Callable[[], Awaitable[P]], *,
                         status: int | Callable[[R], int], view: Callable[[R], Any] | None = None,
                         lazy_prepare: bool = False) -> Response: ...


async def run_idempotent(request: Request, db: Database, principal: str, use_case: Callable[..., Awaitable[Any]],
                         prepare: Callable[[], Awaitable[Any]] | None = None, *,
                         status: int | Callable[[Any], int], view: Callable[[Any], Any] | None = None,
                         lazy_prepare: bool = False) -> Response:
    """Run `use_case` once per Idempotency-Key in one unit of work (it commits nothing itself) and answer its
    result with `status`. `prepare` runs first, outside the unit of work and so outside the write lock: calls to
    other services (idempotent on their side) go there, so that a slow peer never stalls this service's writes;
    the use case then gets what it returned. A stored answer is looked for before `prepare` too (a retry then
    calls nobody).

    `lazy_prepare`: the use case runs first with NOT_PREPARED and raises PrepareFirst only when it needs the
    step, for a step that is needed rarely and costs a local read each time it runs (the giver's transfer asks
    the hub about its binding only when its replica does not say ACTIVE: the read that decides is the use case's
    own, issue 9). No stored answer is looked for before it: the unit of work looks anyway."""
    call = await IdempotentRequest.read(request, principal)
    answer = await run_once(IdempotencyStore(db), db, call, use_case, prepare, status=status, view=view,
                            lazy_prepare=lazy_prepare)
    return Response(content=answer.body, status_code=answer.status, media_type="application/json")


async def run_once(store: IdempotencyStore, db: Database, call: IdempotentRequest,
                   use_case: Callable[..., Awaitable[Any]], prepare: Callable[[], Awaitable[Any]] | None, *,
                   status: int | Callable[[Any], int], view: Callable[[Any], Any] | None = None,
                   lazy_prepare: bool = False) -> Answer:
    # Without a prepare step there is nothing to save: the unit of work looks for the answer first anyway.
    if call.key is not None and prepare is not None and not lazy_prepare:
        previous = await store.get(call.scope, call.key)
        if previous is not None:
            return _replay(previous, call.request_hash)
    refused_early: ApiError | None = None
    prepared = NOT_PREPARED

    async def run_prepare() -> None:
        nonlocal prepared, refused_early
        assert prepare is not None
        try:
            prepared = await prepare()
        except ApiError as refused:
            refused_early = refused

    if prepare is not None and not lazy_prepare:
        await run_prepare()

    async def attempt() -> Answer:
        async with UnitOfWork(db) as uow:
            if call.key is not None:
                previous = await store.get_locked(uow, call.scope, call.key)
                if previous is not None:
                    return _replay(previous, call.request_hash)
            try:
                if refused_early is not None:
                    raise refused_early
                result = await (use_case(uow, prepared) if prepare is not None else use_case(uow))
                answer = Answer(status(result) if callable(status) else status,
                                orjson.dumps(view(result) if view is not None else result))
            except ApiError as refused:
                answer = Answer(refused.status, orjson.dumps(refused.body()))  # leaving without commit undoes all
            else:
                if call.key is not None:
                    await store.remember(uow, call.scope, call.key, call.request_hash, answer)
                await uow.commit()
                return answer
        if call.key is not None and answer.status < 500:
            # The refusal changed nothing; remembering it keeps retries answering the same (not a 5xx: see the
            # module's docstring). A concurrent request with this key that got in meanwhile wins the insert;
            # the retry then answers as it did.
            async with UnitOfWork(db) as uow:
                await store.remember(uow, call.scope, call.key, call.request_hash, answer)
                await uow.commit()
        return answer

    try:
        return await run_retrying(attempt)
    except PrepareFirst:
        if prepare is None or prepared is not NOT_PREPARED:
            raise RuntimeError("PrepareFirst from a use case whose prepare step is not lazy, or has run") from None
    await run_prepare()
    return await run_retrying(attempt)


def _replay(previous: Remembered, request_hash: str) -> Answer:
    if previous.request_hash != request_hash:
        raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another request body")
    return previous.answer
