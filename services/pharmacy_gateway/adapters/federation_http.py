"""The gateway's HTTP clients for the hub's directory and the province nodes' POS API (internal token).

Every call has an explicit total deadline (`timeout_s`): a till must get an answer, and a province that is down
or slow must only hurt its own people. Failures are told apart by what the gateway can know about them:
`Unreachable` means the request never left (connection refused): nothing happened over there. `OutcomeUnknown`
means it may have arrived (timeout, dropped connection, server error): only a reversal can settle it.
`Refused` carries the other side's stable error code and message."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel

from shared import http1
from shared.contracts.internal_api import (
    DirectoryLookup,
    DirectoryLookupResult,
    PosCancelRequest,
    PosPaymentRequest,
    PosPaymentResult,
    PosPerson,
    PosPersonQuery,
    PosReverseRequest,
    PosSplitPreview,
)
from shared.contracts.medical_api import MedicalCall, MedicalResult

Model = TypeVar("Model", bound=BaseModel)


class Unreachable(Exception):
    """The request was never sent: nothing happened at the other side."""


class OutcomeUnknown(Exception):
    """The request may have been applied or not: no answer in time (`timed_out`), or a broken one."""

    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message




class InternalHttp:
    """One base URL, the internal token, a total deadline per call, and a bounded keep-alive pool
    (shared/http1.py: the till's path is hot, and a general-purpose client cost the gateway more CPU than
    everything else it does for a settle)."""

    def __init__(self, base_url: str, internal_token: str, timeout_s: float, max_connections: int) -> None:
        self.timeout_s = timeout_s
        self._pool = http1.KeepAlivePool(base_url, max_connections,
                                         headers={"authorization": f"Bearer {internal_token}"})

    async def close(self) -> None:
        await self._pool.close()

    async def post(self, path: str, body: BaseModel, answer: type[Model]) -> Model:
        try:
            # The till's whole wait, connection included.
            async with asyncio.timeout(self.timeout_s):
                status, content = await self._pool.post(path, body.model_dump_json().encode())
        except http1.NotSent as exc:
            raise Unreachable(str(exc)) from exc
        except TimeoutError as exc:
            raise OutcomeUnknown(f"no answer within {self.timeout_s:g} s", timed_out=True) from exc
        except http1.BrokenExchange as exc:
            raise OutcomeUnknown(f"the connection broke ({exc})", timed_out=False) from exc
        if status >= 500:
            raise OutcomeUnknown(f"it failed (HTTP {status})", timed_out=False)
        if status >= 400:
            error = _error_of(content)
            raise Refused(status, str(error.get("code", "REFUSED")), str(error.get("message", "")))
        return answer.model_validate_json(content)


def _error_of(content: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(content)
    except ValueError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


class DirectoryClient:
    """The hub's directory: which province insures the holder of an ID number or a card. Answers are kept for
    `ttl_s`: a person's province changes only when they move, and the hub stays off most tills' paths."""

    MAX_CACHED = 100_000

    def __init__(self, http: InternalHttp, ttl_s: float) -> None:
        self.http = http
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, DirectoryLookupResult]] = {}

    async def lookup(self, query: DirectoryLookup) -> DirectoryLookupResult | None:
        key = query.id_hash or query.card_hash or ""
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            found = await self.http.post("/internal/v1/directory/lookup", query, DirectoryLookupResult)
        except Refused as refused:
            if refused.status == 404:
                return None  # not cached: the person may be imported in a minute
            raise
        if len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()  # bounded memory; the next lookups refill it
        self._cache[key] = (time.monotonic() + self._ttl_s, found)
        return found

    async def close(self) -> None:
        await self.http.close()


class ProvinceNodes:
    """The POS API of every province node, one pooled client per province, created on first use."""

    def __init__(self, url_of: Callable[[str], str], internal_token: str, timeout_s: float,
                 max_connections: int) -> None:
        self._url_of = url_of
        self._internal_token = internal_token
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._clients: dict[str, InternalHttp] = {}

    def _node(self, admdvs: str) -> InternalHttp:
        client = self._clients.get(admdvs)
        if client is None:
            client = InternalHttp(self._url_of(admdvs), self._internal_token, self._timeout_s,
                                  self._max_connections)
            self._clients[admdvs] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    async def person(self, admdvs: str, query: PosPersonQuery) -> PosPerson | None:
        try:
            return await self._node(admdvs).post("/internal/v1/pos/persons:lookup", query, PosPerson)
        except Refused as refused:
            if refused.status == 404:
                return None
            raise

    async def preview(self, admdvs: str, request: PosPaymentRequest) -> PosSplitPreview:
        return await self._node(admdvs).post("/internal/v1/pos/payments:preview", request, PosSplitPreview)

    async def settle(self, admdvs: str, request: PosPaymentRequest) -> PosPaymentResult:
        return await self._node(admdvs).post("/internal/v1/pos/payments:settle", request, PosPaymentResult)

    async def cancel(self, admdvs: str, request: PosCancelRequest) -> PosPaymentResult:
        return await self._node(admdvs).post("/internal/v1/pos/payments:cancel", request, PosPaymentResult)

    async def reverse(self, admdvs: str, request: PosReverseRequest) -> PosPaymentResult:
        return await self._node(admdvs).post("/internal/v1/pos/payments:reverse", request, PosPaymentResult)

    async def medical_apply(self, admdvs: str, call: MedicalCall) -> MedicalResult:
        """A state-changing hospital or clinic message at the payer's home node (keyed by msgid there)."""
        return await self._node(admdvs).post("/internal/v1/medical/messages:apply", call, MedicalResult)

    async def medical_preview(self, admdvs: str, call: MedicalCall) -> MedicalResult:
        """2206 / 2303: the split a settle would make now; nothing moves."""
        return await self._node(admdvs).post("/internal/v1/medical/messages:preview", call, MedicalResult)
