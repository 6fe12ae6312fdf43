"""HTTP client for the hub's internal API (directory and binding registry). Explicit timeouts; a hub error
with a stable code is passed on to the citizen unchanged, an unreachable hub is a 503."""

from __future__ import annotations

import logging
from typing import Any

import httpx

from shared.contracts.events import BindingSnapshot
from shared.contracts.internal_api import (
    BindingActionRequest,
    BindingCreateRequest,
    BindingLookup,
    BindingResponse,
    DirectoryRegistrationBatch,
    PremiumQuotaRequest,
    PremiumReservation,
    PremiumReservationRequest,
)
from shared.internal_http import InternalClient
from shared.web import ApiError

log = logging.getLogger("yibao.node.hub_client")


class HubClient:
    def __init__(self, base_url: str, internal_token: str, timeout_s: float, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = InternalClient(internal_token, timeout_s, base_url=base_url, unavailable_code="HUB_UNAVAILABLE",
                                    peer="the national hub", transport=transport)

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

    async def binding(self, binding_id: str) -> BindingSnapshot | None:
        """The hub's current snapshot of a binding; None when the hub knows no such binding. An unreachable or
        failing hub raises ApiError 503 HUB_UNAVAILABLE like every other call."""
        try:
            payload = await self._post("/internal/v1/bindings:snapshot",
                                       BindingLookup(binding_id=binding_id).model_dump(mode="json"))
        except ApiError as exc:
            if exc.code == "BINDING_NOT_FOUND":
                return None
            raise
        return BindingResponse.model_validate(payload).binding

    async def binding_if_reachable(self, binding_id: str) -> BindingSnapshot | None:
        """As `binding`, but an unreachable hub is None too (logged): the caller then decides on its replica."""
        try:
            return await self.binding(binding_id)
        except ApiError as exc:
            log.warning("the hub was not asked about binding %s (%s): deciding on the replica", binding_id, exc.code)
            return None

    async def confirm_or_refusal(self, binding_id: str, psn_no: str) -> BindingSnapshot | str:
        """Confirm on behalf of the relative: the snapshot, or the hub's refusal code (a 4xx, e.g.
        BINDING_NOT_PENDING). An unreachable hub raises ApiError 503 (the caller's client retries)."""
        try:
            return await self.binding_action(binding_id, "confirm", BindingActionRequest(psn_no=psn_no))
        except ApiError as refused:
            if refused.status >= 500:
                raise
            return refused.code

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
