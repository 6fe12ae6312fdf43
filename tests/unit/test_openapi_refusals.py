"""What Schemathesis found in the documents (issue 13 point 5), kept in place in process: a rule's refusal of a
schema-valid request is declared on its route (`x-error-codes`), an action's path answers only its own methods
(405 with `Allow` as the document lists them), /metrics documents its content type, and a whole JSON number is
the integer amount its schema admits. The full run against the federation is tests/e2e/test_schemathesis.py."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST

from services.national_hub.bootstrap import bootstrap as hub_app
from services.pharmacy_gateway.bootstrap import bootstrap as gateway_app
from services.province_node.bootstrap import bootstrap as node_app
from services.province_node.config import NodeSettings
from services.province_node.entrypoints.citizen_api import bounded_amount
from shared.openapi import refusal
from shared.web import ApiError


@functools.cache  # building an app takes seconds; these tests only read it
def node() -> FastAPI:
    return node_app(NodeSettings(province_admdvs="640000"))


def codes(document: dict[str, Any], method: str, path: str, status: str) -> list[str]:
    declared: list[str] = document["paths"][path][method]["responses"][status]["x-error-codes"]
    return declared


def test_a_rules_refusal_is_declared_with_its_codes() -> None:
    assert refusal("A_RULE", "ANOTHER")["x-error-codes"] == ["A_RULE", "ANOTHER"]
    document = node().openapi()
    assert {"GIVER_NOT_EMPLOYEE", "KINSHIP_NOT_VERIFIED", "INVALID_ID_NO"} <= set(
        codes(document, "post", "/v1/bindings", "422"))
    assert "TRANSFER_LIMIT_DAILY" in codes(document, "post", "/v1/transfers", "422")
    assert codes(document, "post", "/v1/counter/bindings/{binding_id}:confirm", "404") == ["BINDING_NOT_FOUND"]
    hub = hub_app().openapi()
    assert codes(hub, "get", "/v1/ops/stats", "422") == ["INVALID_PERIOD"]
    assert codes(hub, "post", "/v1/identity/sessions", "429") == ["TOO_MANY_ATTEMPTS"]
    # A 422 that only means "fails validation" declares no code: a valid request never gets it.
    assert "x-error-codes" not in hub["paths"]["/v1/ops/alerts"]["get"]["responses"].get("422", {})


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/bindings/B1:confirm", "POST"),
    ("GET", "/v1/transfers/T1:accept", "POST"),
    ("PATCH", "/v1/bindings/B1", "DELETE"),
])
def test_an_actions_path_answers_only_its_own_methods(method: str, path: str, allow: str) -> None:
    answer = TestClient(node()).request(method, path)
    assert (answer.status_code, answer.headers["allow"]) == (405, allow), answer.text
    assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


@pytest.mark.parametrize("app", [hub_app, gateway_app, node], ids=["hub", "gateway", "node"])
def test_metrics_document_their_content_type(app: Any) -> None:
    content = app().openapi()["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(content) == [CONTENT_TYPE_LATEST]


def test_a_whole_json_number_is_the_integer_amount() -> None:
    assert bounded_amount(500.0, "amount_fen") == 500
    assert type(bounded_amount(500.0, "amount_fen")) is int
    assert bounded_amount(1.5, "amount_fen") == 1.5  # left to the use case, which refuses it (INVALID_AMOUNT)
    with pytest.raises(ApiError) as refused:
        bounded_amount(float(10**13), "amount_fen")
    assert refused.value.code == "INVALID_AMOUNT"
