"""HTTP client from the hub to province nodes' internal API (premiums are answered synchronously)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from shared.internal_http import InternalClient


class NodeClient:
    def __init__(self, url_of: Callable[[str], str], internal_token: str, timeout_s: float, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._url_of = url_of
        self._http = InternalClient(internal_token, timeout_s, unavailable_code="PROVINCE_UNAVAILABLE",
                                    peer="the province node", transport=transport)

    async def close(self) -> None:
        await self._http.close()

    async def post(self, admdvs: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._http.post(f"{self._url_of(admdvs)}{path}", body)
