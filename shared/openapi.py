"""The OpenAPI document tells the truth about refusals (API.md "Conventions", issue 13 point 5).

FastAPI documents a 422 with its own `HTTPValidationError` body, which no route of ours ever sends: every refusal
is `{"error": {"code": "STABLE_CODE", "message": "..."}}` (shared/errors.py, shared/web.py's handlers). So, for
every operation of a service, each documented 4xx answer gets that body's schema, and the whole 4xx range is
listed with it (any route may refuse a wrong method, a missing or wrong token, or a body that fails validation).
Routes that name their specific refusals (`responses=` on the decorator) keep their descriptions."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from starlette.convertors import Convertor, register_url_convertor

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
_VALIDATION = "Refused: the request fails validation (VALIDATION_ERROR or a field's own code)"


class IdSegment(Convertor[str]):
    """`{name:id}` in a route's path: one path segment without a colon. Where a resource and its actions share a
    prefix (`/v1/bindings/{binding_id}` and `/v1/bindings/{binding_id}:confirm`), Starlette's plain `{name}` also
    takes `B1:confirm` for an id, so a DELETE sent to the action's path was routed to the resource (its own 422)
    and `Allow` named DELETE there, which the document does not list. With this, the action's path answers its
    own methods only (a wrong one: 405, `Allow: POST`). The document still says `{name}`."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", IdSegment())  # shared.web imports this module, so every entrypoint has it


def refusal(*codes: str, when: str = "") -> dict[str, Any]:
    """A refusal that a rule gives to a request the schema allows (an ID number whose check digit is wrong, a
    transfer above the daily limit, a binding in another state), declared on its route as
    `responses={422: refusal("GIVER_NOT_EMPLOYEE", "KINSHIP_NOT_VERIFIED")}`. `x-error-codes` lists the codes, so a
    client (and the Schemathesis test, which accepts exactly these answers to valid requests) can tell a rule's
    refusal from a request the validation refuses, which the schema itself describes."""
    text = ", ".join(codes) + (f": {when}" if when else "")
    return {"description": f"Refused by a rule: {text}; nothing changed", "x-error-codes": list(codes)}


def decimal_schema(places: int, maximum: int | Decimal, *,
                   numbers: bool = True) -> Callable[[dict[str, Any]], None]:
    """`json_schema_extra=` of a Decimal field, as its validation takes it: text of at most `places` decimals
    from 0 to `maximum`, or a JSON number on that grid (`numbers=False`: a whole number only). Pydantic documents
    any number and any string, which the field refuses."""
    top = int(maximum)
    fraction = rf"(\.\d{{0,{places}}})?"
    forms = [rf"0+{fraction}", rf"0*\.\d{{1,{places}}}", rf"0*{top}(\.0{{0,{places}}})?"]
    if len(str(top)) > 1:
        forms.insert(0, rf"0*\d{{1,{len(str(top)) - 1}}}{fraction}")
    text = rf"^\s*\+?({'|'.join(forms)})\s*$"  # what Decimal() reads (but exponents, which nobody sends)

    def fill(schema: dict[str, Any]) -> None:
        number: dict[str, Any] = {"type": "number", "minimum": 0, "maximum": top, "multipleOf": float(f"1e-{places}")}
        if not numbers:
            number = {"type": "integer", "minimum": 0, "maximum": top}
        forms = [number, {"type": "string", "pattern": text}]
        if any(form.get("type") == "null" for form in schema.get("anyOf", [])):
            forms.append({"type": "null"})
        schema.pop("type", None)
        schema["anyOf"] = forms

    return fill


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """`openapi_extra=` of a route that reads its body as plain JSON (so that its use case refuses each field with
    that field's own code): the body's schema as the use case enforces it, written down."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


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
                        answer["description"] = _VALIDATION
                    elif status == "422" and "x-error-codes" in answer and _VALIDATION not in answer["description"]:
                        answer["description"] += f"; or {_VALIDATION[0].lower()}{_VALIDATION[1:]}"
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
