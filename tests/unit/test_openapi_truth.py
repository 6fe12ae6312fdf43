"""API.md "Conventions": the OpenAPI documents of the hub, the gateway and a node list, on every operation, their
refusals with the error body the services send (never FastAPI's HTTPValidationError)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from services.national_hub.bootstrap import bootstrap as hub_app
from services.pharmacy_gateway.bootstrap import bootstrap as gateway_app
from services.province_node.bootstrap import bootstrap as node_app
from services.province_node.config import NodeSettings
from shared.openapi import ERROR_BODY_SCHEMA


def node() -> FastAPI:
    return node_app(NodeSettings(province_admdvs="640000"))


@pytest.mark.parametrize("app", [hub_app, gateway_app, node], ids=["hub", "gateway", "node"])
def test_every_operation_lists_its_refusals_with_the_error_body(app: Callable[[], FastAPI]) -> None:
    document: dict[str, Any] = app().openapi()
    assert document["components"]["schemas"]["ErrorBody"] == ERROR_BODY_SCHEMA
    assert "HTTPValidationError" not in document["components"]["schemas"]
    operations = [(path, method, operation) for path, methods in document["paths"].items()
                  for method, operation in methods.items()]
    assert operations
    for path, method, operation in operations:
        refusals = {status: answer for status, answer in operation["responses"].items() if status.startswith("4")}
        assert "4XX" in refusals, (method, path)
        for status, answer in refusals.items():
            assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, \
                (method, path, status)


def test_a_document_is_built_once() -> None:
    app = node()
    assert app.openapi() is app.openapi()


def test_citizen_request_schemas_carry_the_bounds_validation_enforces() -> None:
    document: dict[str, Any] = node().openapi()
    schemas = document["components"]["schemas"]
    binding = schemas["BindingCreate"]["properties"]
    assert binding["relative_id_no"]["pattern"] == r"^\s*\d{17}[\dXx]\s*$"
    assert binding["relation"]["enum"] == ["spouse", "parent", "child", "sibling", "grandparent", "grandchild"]
    transfer = document["paths"]["/v1/transfers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert transfer["properties"]["amount_fen"] == {"type": "integer", "minimum": 1, "maximum": 10**12}
    quota = document["paths"]["/v1/bindings/{binding_id}/quota"]["put"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert quota["properties"]["annual_quota_fen"] == {"type": "integer", "minimum": 0, "maximum": 10**12}
    counter = schemas["CounterConfirm"]["properties"]
    assert counter["relative_id_no"]["pattern"] == binding["relative_id_no"]["pattern"]
