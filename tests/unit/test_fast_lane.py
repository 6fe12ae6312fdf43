"""The fast lane (shared/web.py FastLane): hot POST routes answered before FastAPI's routing, with the same
error bodies as every other route, and counted by the same metrics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.datastructures import Headers

from shared.web import ApiError, FastRoute, create_app


class Order(BaseModel):
    amount_fen: int


async def _order(_state: Any, headers: Headers, raw: bytes) -> tuple[int, bytes]:
    order = Order.model_validate_json(raw)
    if order.amount_fen < 0:
        raise ApiError(422, "NEGATIVE_AMOUNT", "amount_fen must not be negative")
    if order.amount_fen == 13:
        raise RuntimeError("a bug")
    return 200, b'{"paid_fen":%d,"till":"%s"}' % (order.amount_fen, headers.get("x-till", "").encode())


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield


def _client() -> httpx.AsyncClient:
    app, _ = create_app("fast lane test", _lifespan, [], fast_routes=[FastRoute("/orders", _order)])

    @app.get("/orders")
    async def listed() -> list[int]:
        return [1]

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_fast_route_answers_with_its_handler() -> None:
    async with _client() as client:
        answer = await client.post("/orders", content=b'{"amount_fen": 500}', headers={"x-till": "T1"})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"paid_fen": 500, "till": "T1"}


async def test_refusals_have_the_usual_error_body() -> None:
    async with _client() as client:
        refused = await client.post("/orders", json={"amount_fen": -1})
        malformed = await client.post("/orders", content=b"{not json")
        missing = await client.post("/orders", json={})
        bug = await client.post("/orders", json={"amount_fen": 13})
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "NEGATIVE_AMOUNT")
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (422, "MALFORMED_JSON")
    assert (missing.status_code, missing.json()["error"]["code"]) == (422, "VALIDATION_ERROR")
    assert "amount_fen" in missing.json()["error"]["message"]
    assert (bug.status_code, bug.json()["error"]["code"]) == (500, "INTERNAL")


async def test_other_methods_and_paths_go_on_to_fastapi_and_all_are_counted() -> None:
    async with _client() as client:
        assert (await client.get("/orders")).json() == [1]
        assert (await client.post("/elsewhere", json={})).status_code == 404
        await client.post("/orders", json={"amount_fen": 1})
        metrics = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/orders",status="200"} 1.0' in metrics
    assert 'http_requests_total{method="GET",route="/orders",status="200"} 1.0' in metrics
