"""API.md "Conventions": a wrong method gets 405 with `Allow` naming every method of the path, in the error body
of the contract; issue 13's routes document their refusals with the error body schema."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from services.national_hub.bootstrap import bootstrap as hub_app
from services.pharmacy_gateway.bootstrap import bootstrap as gateway_app
from services.province_node.bootstrap import bootstrap as node_app
from services.province_node.config import NodeSettings


def node() -> FastAPI:
    return node_app(NodeSettings(province_admdvs="640000"))


@pytest.mark.parametrize(("app", "method", "path", "allow"), [
    (node, "PATCH", "/v1/bindings", "GET, POST"),
    (node, "PUT", "/v1/bindings/B1", "DELETE"),
    (node, "GET", "/v1/sms/inbound", "POST"),
    (node, "GET", "/v1/counter/bindings/B1:confirm", "POST"),
    (node, "POST", "/v1/me", "GET"),
    (hub_app, "GET", "/v1/identity/sessions", "POST"),
    (gateway_app, "DELETE", "/healthz", "GET"),
])
async def test_a_wrong_method_is_405_with_allow(app: Callable[[], FastAPI], method: str, path: str, allow: str) -> None:
    built = app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=built), base_url="http://service") as client:
        response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


def test_the_confirmation_routes_document_their_refusals() -> None:
    paths = node().openapi()["paths"]
    for path, statuses in (("/v1/sms/inbound", {"401", "422"}), ("/v1/admin/clerks", {"401", "409", "422"}),
                           ("/v1/counter/bindings/{binding_id}:confirm", {"401", "403", "404", "422"})):
        responses = paths[path]["post"]["responses"]
        assert statuses <= set(responses), path
        for status in statuses:
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorBody"}, (path, status)
