"""HTTP client for the hub's internal API (directory and binding registry). Explicit timeouts; a hub error
with a stable code is passed on to the citizen unchanged, an unreachable hub is a 503."""

from __future__ import annotations

from typing import Any

from shared.contracts.events import BindingSnapshot
from shared.contracts.internal_api import (
    BindingActionRequest,
    BindingCreateRequest,
    BindingResponse,
    DirectoryRegistrationBatch,
    PremiumQuotaRequest,
    PremiumReservation,
    PremiumReservationRequest,
)
from shared.internal_http import InternalClient


class HubClient:
    def __init__(self, base_url: str, internal_token: str, timeout_s: float) -> None:
        self._http = InternalClient(internal_token, timeout_s, base_url=base_url, unavailable_code="HUB_UNAVAILABLE",
                                    peer="the national hub")

    async def close(self) -> None:
        await self._http.close()

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._http.post(path, body)

    async def register_persons(self, batch: DirectoryRegistrationBatch) -> None:
        await self._post("/internal/v1/directory/persons", batch.model_dump(mode="json"))

    async def create_binding(self, request: BindingCreateRequest) -> BindingSnapshot:
        payload = await self._post("/internal/v1/bindings", request.model_dump(mode="json"))
        return BindingResponse.model_validate(payload).binding

    async def binding_action(self, binding_id: str, action: str, request: BindingActionRequest) -> BindingSnapshot:
        payload = await self._post(f"/internal/v1/bindings/{binding_id}:{action}", request.model_dump(mode="json"))
        return BindingResponse.model_validate(payload).binding

    async def reserve_premium(self, request: PremiumReservationRequest) -> PremiumReservation:
        payload = await self._post("/internal/v1/premiums:reserve", request.model_dump(mode="json"))
        return PremiumReservation.model_validate(payload)

    async def release_premium(self, request: PremiumReservationRequest) -> None:
        await self._post("/internal/v1/premiums:release", request.model_dump(mode="json"))

    async def premium_from_quota(self, request: PremiumQuotaRequest) -> PremiumReservation:
        payload = await self._post("/internal/v1/premiums:pay-from-quota", request.model_dump(mode="json"))
        return PremiumReservation.model_validate(payload)

    async def ping(self) -> None:
        response = await self._http.get("/healthz")
        response.raise_for_status()
