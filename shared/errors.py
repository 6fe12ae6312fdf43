"""Refusals, free of any web framework: use cases raise ApiError (an HTTP status and a stable code) and the
entrypoints turn it into the JSON error body of the contract (shared/web.py). Kept apart from shared/web.py so
that service layers import no FastAPI (tests/unit/test_structure.py)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refused request: HTTP status plus a stable code. Raised by use cases; changes nothing."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
