"""Service-to-service HTTP (internal token, explicit timeout) where the caller passes the other side's answer
on: a refusal keeps its status and stable code; an unreachable or failing peer becomes a 503 with the
caller's own code (HUB_UNAVAILABLE, PROVINCE_UNAVAILABLE), never a 500."""

from __future__ import annotations

from typing import Any

import httpx

from shared.web import ApiError


class InternalClient:
    def __init__(self, internal_token: str, timeout_s: float, *, base_url: str = "",
                 unavailable_code: str, peer: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # `transport`: None is TCP; tests give an in-process one (httpx.ASGITransport over the peer's app).
        self._http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout_s), transport=transport,
                                       headers={"authorization": f"Bearer {internal_token}"})
        self._unavailable_code = unavailable_code
        self._peer = peer

    async def close(self) -> None:
        await self._http.aclose()

    async def get(self, url: str) -> httpx.Response:
        return await self._http.get(url)

    async def post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise ApiError(503, self._unavailable_code,
                           f"{self._peer} did not answer: {type(exc).__name__}") from exc
        payload = response.json() if response.content else {}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            status = response.status_code if response.status_code < 500 else 503
            raise ApiError(status, str(error.get("code", self._unavailable_code)),
                           str(error.get("message", f"{self._peer} refused")))
        result: dict[str, Any] = payload
        return result
