"""The OpenAPI document tells the truth about refusals (API.md "Conventions", issue 13 point 5).

FastAPI documents a 422 with its own `HTTPValidationError` body, which no route of ours ever sends: every refusal
is `{"error": {"code": "STABLE_CODE", "message": "..."}}` (shared/errors.py, shared/web.py's handlers). So, for
every operation of a service, each documented 4xx answer gets that body's schema, and the whole 4xx range is
listed with it (any route may refuse a wrong method, a missing or wrong token, or a body that fails validation).
Routes that name their specific refusals (`responses=` on the decorator) keep their descriptions."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_BODY_SCHEMA: dict[str, Any] = {
    "title": "ErrorBody",
    "description": "Every refusal: a stable code and a human message; a refused request changed nothing.",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}, "message": {"type": "string"}},
    }},
}
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _is_refusal(status: str) -> bool:
    return status == "4XX" or (len(status) == 3 and status.startswith("4") and status.isdigit())


def with_error_bodies(schema: dict[str, Any]) -> dict[str, Any]:
    """The document with the error body on every 4xx answer of every operation (changed in place)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["ErrorBody"] = ERROR_BODY_SCHEMA
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            responses.setdefault("4XX", {"description": "Refused (a wrong method, token or body, or a rule); "
                                                        "nothing changed"})
            for status, answer in responses.items():
                if _is_refusal(status):
                    if answer.get("description") == "Validation Error":
                        answer["description"] = "Refused: the request fails validation (VALIDATION_ERROR or a " \
                                                "field's own code)"
                    answer["content"] = {"application/json": {"schema": _ERROR_REF}}
    text = repr(schema.get("paths", {}))
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        if f"#/components/schemas/{name}'" not in text:
            schemas.pop(name, None)
    return schema


def install_truthful_errors(app: FastAPI) -> None:
    """Wrap the app's document builder once; FastAPI caches the result in `app.openapi_schema`."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_error_bodies(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
