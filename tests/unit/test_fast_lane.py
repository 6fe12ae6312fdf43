"""Fast routes (shared/web.py FastRoute): hot POSTs served as plain Starlette routes in front of FastAPI's, with
the token checked before the body is read, a capped body, the usual error bodies and 405s, a 422 only for the
request body itself, and the same metrics as every other route."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Message

from shared.web import ApiError, FastDoc, FastRoute, create_app, parse_body, require_static_token

TOKEN = "fast-route-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
CAP = 64


class Order(BaseModel):
    amount_fen: int


class StoredAnswer(BaseModel):
    paid_fen: int


async def _order(_state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    order = parse_body(Order, raw)
    if order.amount_fen < 0:
        raise ApiError(409, "NEGATIVE_AMOUNT", "amount_fen must not be negative")
    if order.amount_fen == 13:
        raise RuntimeError("a bug")
    if order.amount_fen == 14:
        # A ValidationError from inside the use case (a stored answer that no longer parses): a bug, not bad input.
        StoredAnswer.model_validate_json(b'{"paid":"x"}')
    return 200, b'{"paid_fen":%d,"till":"%s"}' % (order.amount_fen, headers.get("x-till", "").encode())


def _token(_state: Any, headers: Headers) -> None:
    require_static_token(headers, TOKEN, "internal")


def _national(status: int, _code: str, message: str) -> tuple[int, bytes]:
    return status, b'{"infcode":-1,"err_msg":"%s"}' % message.encode()


ORDERS = FastRoute("/orders", _order, auth=_token, max_body_bytes=CAP)
ENVELOPED = FastRoute("/enveloped", _order, max_body_bytes=CAP, refusal=_national)


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield


def _app() -> FastAPI:
    app, _ = create_app("fast route test", _lifespan, [], fast_routes=[ORDERS, ENVELOPED])

    @app.get("/orders")
    async def listed() -> list[int]:
        return [1]

    return app


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_app()), base_url="http://test")


class RawCall:
    """One request straight through the app's ASGI interface, counting how much of the body it asked for."""

    def __init__(self, chunks: list[bytes], headers: dict[str, str], *, disconnect_after: int | None = None) -> None:
        self.chunks = chunks
        self.headers = headers
        self.disconnect_after = disconnect_after
        self.received = 0
        self.sent: list[Message] = []

    async def run(self, app: FastAPI, path: str = "/orders") -> None:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "client": ("127.0.0.1", 1), "server": ("test", 80),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]}
        await app(scope, self.receive, self.send)

    async def receive(self) -> Message:
        if self.disconnect_after is not None and self.received >= self.disconnect_after:
            return {"type": "http.disconnect"}
        chunk = self.chunks[self.received]
        self.received += 1
        return {"type": "http.request", "body": chunk, "more_body": self.received < len(self.chunks)}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        status: int = self.sent[0]["status"]
        return status

    @property
    def body(self) -> bytes:
        return b"".join(message.get("body", b"") for message in self.sent[1:])


async def test_a_fast_route_answers_with_its_handler() -> None:
    async with _client() as client:
        answer = await client.post("/orders", content=b'{"amount_fen": 500}', headers=AUTH | {"x-till": "T1"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"paid_fen": 500, "till": "T1"}


def test_fast_routes_are_starlette_routes_in_front_of_every_other_route() -> None:
    first, second = _app().router.routes[:2]
    assert isinstance(first, Route) and isinstance(second, Route)
    assert (first.path, first.methods, second.path) == ("/orders", {"POST"}, "/enveloped")


async def test_refusals_have_the_usual_error_body() -> None:
    async with _client() as client:
        refused = await client.post("/orders", json={"amount_fen": -1}, headers=AUTH)
        malformed = await client.post("/orders", content=b"{not json", headers=AUTH)
        missing = await client.post("/orders", json={}, headers=AUTH)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "NEGATIVE_AMOUNT")
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (422, "MALFORMED_JSON")
    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "VALIDATION_ERROR")
    assert "amount_fen" in missing.json()["error"]["message"]


async def test_only_the_request_body_failing_its_model_is_a_422(caplog: pytest.LogCaptureFixture) -> None:
    async with _client() as client:
        with caplog.at_level(logging.ERROR, logger="yibao.web"):
            inner = await client.post("/orders", json={"amount_fen": 14}, headers=AUTH)
            bug = await client.post("/orders", json={"amount_fen": 13}, headers=AUTH)
    assert (inner.status_code, inner.json()["error"]["code"]) == (500, "INTERNAL")
    assert (bug.status_code, bug.json()["error"]["code"]) == (500, "INTERNAL")
    logged = [record for record in caplog.records if record.getMessage() == "unhandled error on POST /orders"]
    assert len(logged) == 2 and logged[0].exc_info is not None
    assert type(logged[0].exc_info[1]).__name__ == "ValidationError"


async def test_the_token_is_checked_before_a_byte_of_the_body_is_read() -> None:
    app = _app()
    for headers in ({}, {"authorization": "Bearer wrong"}):
        call = RawCall([b'{"amount_fen": 1}'], headers)
        await call.run(app)
        assert (call.status, call.received) == (401, 0)
        assert b'"UNAUTHENTICATED"' in call.body
    good = RawCall([b'{"amount_fen": 1}'], AUTH)
    await good.run(app)
    assert (good.status, good.received) == (200, 1)


async def test_a_body_over_the_cap_is_refused_by_its_length_before_reading() -> None:
    call = RawCall([b"x" * (CAP + 1)], AUTH | {"content-length": str(CAP + 1)})
    await call.run(_app())
    assert (call.status, call.received) == (413, 0)
    assert b'"BODY_TOO_LARGE"' in call.body


async def test_a_body_without_a_length_is_counted_while_reading_and_refused_once_over_the_cap() -> None:
    chunks = [b'{"amount_fen": 1' + b" " * 30, b" " * 30, b" " * 30, b"}"]
    call = RawCall(chunks, AUTH)  # chunked upload: no content-length
    await call.run(_app())
    assert (call.status, call.received) == (413, 2)  # stopped at the chunk that went over, the rest never read


async def test_a_body_exactly_at_the_cap_and_one_in_pieces_are_read_whole() -> None:
    body = b'{"amount_fen": 7}'
    at_cap = body + b" " * (CAP - len(body))
    whole = RawCall([at_cap], AUTH | {"content-length": str(CAP)})
    pieces = RawCall([body[:5], body[5:11], body[11:]], AUTH)
    for call in (whole, pieces):
        await call.run(_app())
        assert call.status == 200 and b'"paid_fen":7' in call.body
    assert pieces.received == 3


async def test_a_lying_content_length_is_caught_while_reading() -> None:
    call = RawCall([b"x" * (CAP + 10)], AUTH | {"content-length": "10"})
    await call.run(_app())
    assert call.status == 413


async def test_a_client_gone_before_the_body_ends_gets_no_answer_and_runs_nothing() -> None:
    call = RawCall([b'{"amount_fen"', b": 1}"], AUTH, disconnect_after=1)
    await call.run(_app())
    assert call.sent == []


async def test_a_route_may_answer_its_own_refusals_in_another_envelope() -> None:
    over = RawCall([b"x" * (CAP + 1)], {"content-length": str(CAP + 1)})
    await over.run(_app(), "/enveloped")
    assert over.status == 413 and over.body.startswith(b'{"infcode":-1,"err_msg":"the request body is over')
    async with _client() as client:
        bug = await client.post("/enveloped", json={"amount_fen": 13})
    assert bug.status_code == 500 and bug.json()["infcode"] == -1


async def test_other_methods_get_the_usual_405_with_allow_and_other_paths_go_on_to_fastapi() -> None:
    async with _client() as client:
        listed = await client.get("/orders")  # the path has a FastAPI GET route as well
        wrong = await client.get("/enveloped")
        put = await client.put("/orders", json={})
        elsewhere = await client.post("/elsewhere", json={})
    assert listed.json() == [1]
    assert (wrong.status_code, wrong.headers["allow"], wrong.json()["error"]["code"]) == (
        405, "POST", "METHOD_NOT_ALLOWED")
    assert (put.status_code, put.headers["allow"]) == (405, "GET, POST")
    assert elsewhere.status_code == 404


async def test_fast_routes_are_counted_under_their_path_like_every_other_route() -> None:
    async with _client() as client:
        await client.get("/orders")
        await client.post("/orders", json={"amount_fen": 1}, headers=AUTH)
        await client.post("/orders", json={"amount_fen": 1})
        await client.get("/enveloped")
        metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/orders",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="POST",route="/orders",status="401"} 1.0' in metrics
    assert 'http_requests_total{method="GET",route="/orders",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="GET",route="/enveloped",status="405"} 1.0' in metrics


async def test_a_documented_fast_route_appears_in_the_openapi_document_with_its_refusals() -> None:
    documented = FastRoute("/documented", _order, auth=_token, max_body_bytes=CAP,
                           doc=FastDoc("Pay an order", Order, StoredAnswer, tags=("orders",), bearer=True))
    app, _ = create_app("fast route test", _lifespan, [], fast_routes=[ORDERS, documented])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        document = (await client.get("/openapi.json")).json()
    assert "/orders" not in document["paths"]  # undocumented: left out
    operation = document["paths"]["/documented"]["post"]
    assert operation["summary"] == "Pay an order" and operation["tags"] == ["orders"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Order"}
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StoredAnswer"}
    assert document["components"]["schemas"]["Order"]["required"] == ["amount_fen"]
    for status in ("401", "413", "422", "4XX"):  # each refusal with the error body (shared/openapi.py)
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}, status
