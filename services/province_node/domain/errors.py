"""Typed refusals of the province node, each with the stable code of the external contract."""

from __future__ import annotations

from shared.errors import ApiError


class DomainError(ApiError):
    status = 422

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(status or type(self).status, code, message)


class NotFound(DomainError):
    status = 404


class Forbidden(DomainError):
    status = 403
