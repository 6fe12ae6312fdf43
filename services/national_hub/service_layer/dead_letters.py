"""The federation's dead letters for operators: every service parks the messages it could not apply in its own
`dead_letters` table (shared/dead_letters.py); the hub lists them all (its own, each province node's, the
gateway's, asked over the internal API) and forwards a replay to the service that parked the message.

Ids seen by operators are `<service>:<n>`: `hub:3`, `node-620000:17`, `gateway:2` (n is the row id in that
service's table). A service that does not answer is listed in `unreachable` rather than failing the listing."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx

from services.national_hub.config import HubSettings
from shared.dead_letters import parse_state
from shared.dead_letters_api import DeadLetterHost
from shared.errors import ApiError
from shared.internal_http import InternalClient

HUB = "hub"
GATEWAY = "gateway"
_ID = re.compile(r"^(hub|gateway|node-\d{6}):(\d{1,18})$")
# What operators see of a dead letter (no payload: it stays in the owning service's table).
_FIELDS = ("topic", "key", "message_type", "message_id", "error", "state", "parked_at", "replayed_at", "attempts")


@dataclass(frozen=True)
class Peer:
    service: str
    url: str
    unavailable_code: str


def peers(settings: HubSettings) -> list[Peer]:
    """The other services, in the order operators read them: the nodes, then the gateway."""
    nodes = [Peer(f"node-{code}", settings.province_url(code), "PROVINCE_UNAVAILABLE")
             for code in settings.province_codes]
    return [*nodes, Peer(GATEWAY, settings.gateway_url, "GATEWAY_UNAVAILABLE")]


def _operator_item(service: str, item: dict[str, Any]) -> dict[str, Any]:
    blocked_by = item.get("blocked_by")
    return {"id": f"{service}:{item['id']}", "service": service, **{name: item.get(name) for name in _FIELDS},
            "blocked_by": f"{service}:{blocked_by}" if blocked_by is not None else None}


def _operator_ids(service: str, ids: list[int]) -> list[str]:
    return [f"{service}:{n}" for n in ids]


def _operator_answer(service: str, answer: dict[str, Any]) -> dict[str, Any]:
    out = {"id": f"{service}:{answer['id']}", "service": service, "state": answer["state"],
           "replayed": _operator_ids(service, list(answer.get("replayed", []))),
           "still_parked": _operator_ids(service, list(answer.get("still_parked", [])))}
    if "error" in answer:
        out["error"] = answer["error"]
    return out


def _client(settings: HubSettings, peer: Peer) -> InternalClient:
    return InternalClient(settings.internal_token, settings.internal_http_timeout_s, base_url=peer.url,
                          unavailable_code=peer.unavailable_code, peer=peer.service)


async def _remote_list(settings: HubSettings, peer: Peer, state: str | None) -> list[dict[str, Any]] | None:
    client = _client(settings, peer)
    try:
        query = f"?state={state}" if state else ""
        response = await client.get(f"/internal/v1/dead-letters{query}")
        if response.status_code != 200:
            return None
        items: list[dict[str, Any]] = response.json()["dead_letters"]
        return items
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    finally:
        await client.close()


async def list_all(host: DeadLetterHost, settings: HubSettings, state: str | None) -> dict[str, Any]:
    wanted = parse_state(state)  # a bad filter is refused here, not by every peer
    others = peers(settings)
    own, *remote = await asyncio.gather(host.list(wanted), *(_remote_list(settings, p, wanted) for p in others))
    listed = [_operator_item(HUB, item) for item in own]
    answered, unreachable = [HUB], []
    for peer, items in zip(others, remote, strict=True):
        if items is None:
            unreachable.append(peer.service)
        else:
            answered.append(peer.service)
            listed += [_operator_item(peer.service, item) for item in items]
    return {"dead_letters": listed, "services": answered, "unreachable": unreachable}


def parse_id(operator_id: str, settings: HubSettings) -> tuple[str, int]:
    match = _ID.match(operator_id)
    known = {HUB} | {p.service for p in peers(settings)}
    if match is None or match.group(1) not in known:
        raise ApiError(404, "DEAD_LETTER_NOT_FOUND",
                       "no such dead letter (ids are <service>:<n>, e.g. hub:3, node-620000:17, gateway:2)")
    return match.group(1), int(match.group(2))


async def replay(host: DeadLetterHost, settings: HubSettings, operator_id: str) -> dict[str, Any]:
    """Replay at the owning service; its refusals (404, 409) keep their status and code, an unreachable
    service is a 503 with PROVINCE_UNAVAILABLE / GATEWAY_UNAVAILABLE."""
    service, number = parse_id(operator_id, settings)
    if service == HUB:
        return _operator_answer(HUB, await host.replay(number))
    peer = next(p for p in peers(settings) if p.service == service)
    client = _client(settings, peer)
    try:
        answer = await client.post(f"/internal/v1/dead-letters/{number}:replay", {})
    finally:
        await client.close()
    return _operator_answer(service, answer)
