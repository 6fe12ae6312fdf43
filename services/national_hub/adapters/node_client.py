"""HTTP client from the hub to province nodes' internal API (premiums are answered synchronously)."""

from __future__ import annotations

from typing import Any

import httpx

from shared.web import ApiError


class NodeClient:
    def __init__(self, url_of: Any, internal_token: str, timeout_s: float) -> None:
        self._url_of = url_of
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                       headers={"authorization": f"Bearer {internal_token}"})

    async def close(self) -> None:
        await self._http.aclose()

    async def post(self, admdvs: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._http.post(f"{self._url_of(admdvs)}{path}", json=body)
        except httpx.HTTPError as exc:
            raise ApiError(503, "PROVINCE_UNAVAILABLE",
                           f"the node of {admdvs} did not answer: {type(exc).__name__}") from exc
        payload: dict[str, Any] = response.json() if response.content else {}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            status = response.status_code if response.status_code < 500 else 503
            raise ApiError(status, str(error.get("code", "PROVINCE_ERROR")), str(error.get("message", "refused")))
        return payload
