"""`Idempotency-Key` for state-changing HTTP calls (the contract): same key + same body -> the original answer,
same status and body; same key + another body -> 409 IDEMPOTENCY_KEY_REUSED. Transient 5xx answers are not
remembered, so a retry after one runs the request. The answer is stored in the same
transaction as the change it describes, so a crash can never leave a change without its answer."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from fastapi import Request
from fastapi.responses import Response

from shared.db import Database, ReadView, UnitOfWork, run_retrying
from shared.messaging_tables import IdempotencyRecord
from shared.tables import table
from shared.web import ApiError

_RECORDS = table(IdempotencyRecord)
_STORED = sa.select(_RECORDS).where(_RECORDS.c.scope == sa.bindparam("scope"), _RECORDS.c.key == sa.bindparam("key"))
_NEW_RECORD = sa.insert(_RECORDS)

# use_case(uow) -> result; with `prepare`, use_case(uow, prepared). The entrypoint names the success status
# (`status=201`, or a function of the result) and, with `view`, how the result is written (default: as it is,
# a dict or a dataclass). Without `status`, the older form: the use case returns (status, body) (kept while the
# use cases move over).
UseCase = Callable[..., Awaitable[Any]]
Prepare = Callable[[], Awaitable[Any]]
SuccessStatus = int | Callable[[Any], int]
View = Callable[[Any], Any]


def _json(status: int, body: bytes) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


async def _stored(db: Database, scope: str, key: str) -> Any:
    async with ReadView(db) as view:
        return (await view.execute(_STORED, {"scope": scope, "key": key})).first()


async def run_idempotent(request: Request, db: Database, principal: str, use_case: UseCase,
                         prepare: Prepare | None = None, *, status: SuccessStatus | None = None,
                         view: View | None = None) -> Response:
    """Run `use_case` in one unit of work; it returns (status, body) and commits nothing itself.

    `prepare` runs first, outside the unit of work and so outside the write lock: calls to other services
    (idempotent on their side) go there, so that a slow peer never stalls this service's writes."""
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 200):
        raise ApiError(422, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 200 characters")
    raw_body = await request.body()
    scope = f"{principal}|{request.method}|{request.url.path}"
    request_hash = hashlib.sha256(raw_body).hexdigest()
    if key is not None:
        previous = await _stored(db, scope, key)
        if previous is not None:
            return _replay(previous, request_hash)
    success = status
    refused_early: ApiError | None = None
    prepared = None
    try:
        prepared = await prepare() if prepare is not None else None
    except ApiError as refused:
        refused_early = refused

    async def attempt() -> Response:
        async with UnitOfWork(db) as uow:
            if key is not None:
                # Two requests with one key at once (two replicas, or a client retrying early): the second
                # waits here for the first to finish, then answers as it did.
                await uow.lock_name(f"idem|{scope}|{key}")
                previous = (await uow.execute(_STORED, {"scope": scope, "key": key})).first()
                if previous is not None:
                    return _replay(previous, request_hash)
            try:
                if refused_early is not None:
                    raise refused_early
                result = await (use_case(uow, prepared) if prepare is not None else use_case(uow))
                if success is None or _is_legacy_answer(result):
                    answer_status, payload = result
                else:
                    answer_status = success(result) if callable(success) else success
                    payload = view(result) if view is not None else result
            except ApiError as refused:
                answer_status, payload = refused.status, refused.body()  # leaving without commit undoes everything
            else:
                body = orjson.dumps(payload)
                if key is not None:
                    await _remember(uow, scope, key, request_hash, answer_status, body)
                await uow.commit()
                return _json(answer_status, body)
        body = orjson.dumps(payload)
        if key is not None and answer_status < 500:
            # The refusal changed nothing; remembering it keeps retries answering the same. A 5xx (a peer this
            # service needed did not answer) is not remembered: it says nothing about the request, and the
            # client's retry under the same key must get a real answer. A concurrent
            # request with this key that got in meanwhile wins the insert; the retry then answers as it did.
            async with UnitOfWork(db) as uow:
                await _remember(uow, scope, key, request_hash, answer_status, body)
                await uow.commit()
        return _json(answer_status, body)

    return await run_retrying(attempt)


def _is_legacy_answer(result: Any) -> bool:
    """(status, body) from a use case not moved yet: while the use cases move over, either form is taken."""
    return isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], int)


def _replay(previous: Any, request_hash: str) -> Response:
    if previous.request_hash != request_hash:
        raise ApiError(409, "IDEMPOTENCY_KEY_REUSED", "this Idempotency-Key was used with another request body")
    return _json(previous.status_code, bytes(previous.body))


async def _remember(uow: UnitOfWork, scope: str, key: str, request_hash: str, status: int, body: bytes) -> None:
    await uow.execute(_NEW_RECORD, {"scope": scope, "key": key, "request_hash": request_hash, "status_code": status,
                                    "body": body, "created_at": datetime.now(UTC)})
