"""A small async client for the federation's external API, shared by the demo, the bench and the end-to-end
tests so that all three speak to the services exactly as an outside client would."""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from launcher.topology import GATEWAY_PORT, HOST, HUB_PORT
from shared.settings import province_node_port


def face_image_b64(label: str) -> str:
    """A stand-in face image: the local face verifier compares enrolled and presented bytes."""
    return base64.b64encode(f"face-image:{label}".encode()).decode()


@dataclass
class Session:
    token: str
    psn_no: str
    admdvs: str


# Waits between tries of a keyed write that met a 503; None marks the last try.
RETRY_DELAYS_S: tuple[float | None, ...] = (0.5, 1.0, 2.0, 4.0, None)


class FederationClient:
    def __init__(self, operator_token: str, timeout_s: float = 10.0) -> None:
        self.operator_token = operator_token
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                      limits=httpx.Limits(max_connections=200, max_keepalive_connections=200))

    async def aclose(self) -> None:
        await self.http.aclose()

    @staticmethod
    def hub_url() -> str:
        return f"http://{HOST}:{HUB_PORT}"

    @staticmethod
    def gateway_url() -> str:
        return f"http://{HOST}:{GATEWAY_PORT}"

    @staticmethod
    def node_url(admdvs: str) -> str:
        return f"http://{HOST}:{province_node_port(admdvs)}"

    def _operator(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"authorization": f"Bearer {self.operator_token}"}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return headers

    async def _send_keyed(self, method: str, url: str, body: Any, headers: dict[str, str]) -> httpx.Response:
        """A state-changing call under one Idempotency-Key (in `headers`), sent again with the same key while the
        service answers 503 or the connection fails: a peer it needed was slow (a node's import or binding waits
        on the hub), and the key makes the retry safe (a 503 is never remembered). Any other answer is final."""
        for delay_s in RETRY_DELAYS_S:
            try:
                response = await self.http.request(method, url, json=body, headers=headers)
            except httpx.TransportError:
                if delay_s is None:
                    raise
            else:
                if response.status_code != 503 or delay_s is None:
                    return response
            await asyncio.sleep(delay_s)
        raise AssertionError("unreachable: the last delay is None")

    async def _operator_post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send_keyed("POST", url, body, self._operator(uuid.uuid4().hex))
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def import_persons(self, admdvs: str, persons: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._operator_post(f"{self.node_url(admdvs)}/v1/admin/persons:import", {"persons": persons})

    async def import_kinship(self, relations: list[dict[str, str]]) -> dict[str, Any]:
        return await self._operator_post(f"{self.hub_url()}/v1/admin/kinship:import", {"relations": relations})

    async def login(self, id_no: str, name: str, *, face_label: str | None = None,
                    password: str | None = None) -> Session:
        body: dict[str, Any] = {"id_no": id_no, "name": name}
        if face_label is not None:
            body |= {"method": "face", "face_image_b64": face_image_b64(face_label)}
        else:
            body |= {"method": "password", "password": password}
        response = await self.http.post(f"{self.hub_url()}/v1/identity/sessions", json=body)
        response.raise_for_status()
        data = response.json()
        return Session(data["access_token"], data["psn_no"], data["insuplc_admdvs"])

    async def call(self, session: Session, method: str, path: str, json: Any = None,
                   idempotency_key: str | None = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {session.token}"}
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        return await self.http.request(method, f"{self.node_url(session.admdvs)}{path}", json=json, headers=headers)

    async def call_keyed(self, session: Session, method: str, path: str, json: Any = None) -> httpx.Response:
        """`call` as a careful client makes a state-changing call: under a fresh Idempotency-Key, sent again with
        it while the node answers 503 (see `_send_keyed`)."""
        headers = {"authorization": f"Bearer {session.token}", "idempotency-key": uuid.uuid4().hex}
        return await self._send_keyed(method, f"{self.node_url(session.admdvs)}{path}", json, headers)

    async def register_institution(self, fixmedins_code: str, fixmedins_name: str, admdvs: str) -> dict[str, Any]:
        """Gateway admin: a pharmacy or clinic and its paas_id / paas_token (answer of the contract, plus the
        institution's own fields, which PosClient.registered reads)."""
        return await self._operator_post(f"{self.gateway_url()}/v1/admin/institutions", {
            "fixmedins_code": fixmedins_code, "fixmedins_name": fixmedins_name, "admdvs": admdvs})

    async def import_catalogue(self, items: list[dict[str, str]]) -> dict[str, Any]:
        return await self._operator_post(f"{self.gateway_url()}/v1/admin/catalogue:import", {"items": items})

    async def ledger_summary(self, admdvs: str, internal_token: str) -> dict[str, Any]:
        response = await self.http.get(f"{self.node_url(admdvs)}/internal/v1/ledger/summary",
                                       headers={"authorization": f"Bearer {internal_token}"})
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result
