"""Steps the end-to-end tests compose: people, bindings, transfers, and money totals across the federation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from launcher.client import FederationClient, Session
from launcher.people import Person, new_person
from tests.conftest import Federation


@dataclass
class Pair:
    giver: Person
    relative: Person
    giver_session: Session
    relative_session: Session
    binding_id: str


async def enrol(client: FederationClient, *people: Person) -> None:
    by_province: dict[str, list[Person]] = {}
    for person in people:
        by_province.setdefault(person.admdvs, []).append(person)
    for admdvs, group in by_province.items():
        result = await client.import_persons(admdvs, [p.import_body() for p in group])
        assert result["rejected"] == [], result


async def face_login(client: FederationClient, person: Person) -> Session:
    return await client.login(person.id_no, person.name, face_label=person.face_label)


async def bound_pair(client: FederationClient, giver_pooling: str, relative_pooling: str, *,
                     relation: str = "parent", relative_employee: bool = False, open_wallet: bool = True,
                     giver_fen: int = 1_000_000) -> Pair:
    """An employee giver and a relative, kinship on file, binding confirmed by the relative's face."""
    giver = new_person(giver_pooling, personal_account_fen=giver_fen)
    relative = new_person(relative_pooling, employee=relative_employee)
    await enrol(client, giver, relative)
    giver_session = await face_login(client, giver)
    relative_session = await face_login(client, relative)
    if open_wallet:
        opened = await client.call_keyed(relative_session, "POST", "/v1/wallet:open")
        assert opened.status_code == 201, opened.text
    return await bind(client, giver, giver_session, relative, relative_session, relation)


async def bind(client: FederationClient, giver: Person, giver_session: Session, relative: Person,
               relative_session: Session, relation: str = "parent") -> Pair:
    """Two enrolled people: kinship on file, the giver binds, the relative confirms by face; many to many, so
    either may already be part of other bindings."""
    await client.import_kinship([{"id_no_a": giver.id_no, "id_no_b": relative.id_no, "relation": relation}])
    created = await client.call_keyed(giver_session, "POST", "/v1/bindings", {
        "relative_id_no": relative.id_no, "relative_name": relative.name, "relation": relation})
    assert created.status_code == 201, created.text
    binding_id = created.json()["binding_id"]
    # As in life, she confirms what her app shows her: the request reaches her province over Kafka, and a
    # confirmation that overtook it would leave her without the "please confirm" notice the tests read.
    await wait_binding_state(client, relative_session, binding_id, "PENDING_CONSENT")
    confirmed = await client.call_keyed(relative_session, "POST", f"/v1/bindings/{binding_id}:confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["state"] == "ACTIVE"
    await wait_binding_state(client, giver_session, binding_id, "ACTIVE")
    return Pair(giver, relative, giver_session, relative_session, binding_id)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 15) -> None:
    """Poll until `check` holds: the federation is eventually consistent across provinces."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


async def wait_binding_state(client: FederationClient, session: Session, binding_id: str, state: str,
                             timeout_s: float = 10, *, reason: str | None = None) -> dict[str, Any]:
    """Until the binding, as `session`'s node lists it, is in `state` (and ended for `reason`, if given)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = (await client.call(session, "GET", "/v1/bindings")).json()
        for binding in listed:
            if binding["binding_id"] == binding_id and binding["state"] == state \
                    and reason in (None, binding["ended_reason"]):
                found: dict[str, Any] = binding
                return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"binding {binding_id} never reached {state} ({reason}) at {session.admdvs}")


async def operator_post(client: FederationClient, admdvs: str, path: str, body: Any = None) -> httpx.Response:
    """An admin call to a province node (operator token, a fresh Idempotency-Key)."""
    return await client.http.post(f"{client.node_url(admdvs)}{path}", json=body, headers={
        "authorization": f"Bearer {client.operator_token}", "idempotency-key": uuid.uuid4().hex})


async def notices(client: FederationClient, session: Session) -> list[str]:
    response = await client.call(session, "GET", "/v1/notifications")
    assert response.status_code == 200, response.text
    return [notice["text"] for notice in response.json()]


async def send(client: FederationClient, pair: Pair, amount_fen: int, key: str | None = None) -> dict[str, Any]:
    response = await client.call(pair.giver_session, "POST", "/v1/transfers",
                                 {"binding_id": pair.binding_id, "amount_fen": amount_fen},
                                 idempotency_key=key or uuid.uuid4().hex)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_transfer(client: FederationClient, session: Session, transfer_id: str,
                        states: tuple[str, ...] = ("CREDITED", "REFUNDED"), timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            response = await client.call(session, "GET", f"/v1/transfers/{transfer_id}")
            if response.status_code == 200:
                last = response.json()
                if last["state"] in states:
                    return last
        except Exception:  # the node may be restarting in crash tests
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"transfer {transfer_id} stuck: {last}")


async def hub_hops(client: FederationClient, transfer_id: str) -> list[str]:
    """A transfer's hops as the hub's trace lists them (GET /v1/ops/transfers/{id}/trace); none before the hub
    has heard of it."""
    response = await client.http.get(f"{client.hub_url()}/v1/ops/transfers/{transfer_id}/trace",
                                     headers={"authorization": f"Bearer {client.operator_token}"})
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    return [hop["hop"] for hop in response.json()["hops"]]


async def hub_has_hop(client: FederationClient, transfer_id: str, hop: str) -> bool:
    return hop in await hub_hops(client, transfer_id)


async def hub_heard_every_answer(client: FederationClient, transfer_id: str) -> bool:
    """The hub decided the transfer, and the destination answered everything the hub asked it (the credit, and
    each cancel): no answer about the transfer is still on its way."""
    hops = await hub_hops(client, transfer_id)
    asked = 1 + sum(hop.endswith("_CANCEL_REQUESTED") for hop in hops)
    answered = sum(hop.startswith("DESTINATION_") for hop in hops)
    return answered >= asked and any(hop.startswith("DECIDED_") for hop in hops)


async def me(client: FederationClient, session: Session) -> dict[str, Any]:
    response = await client.call(session, "GET", "/v1/me")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def money_totals(client: FederationClient, federation: Federation) -> dict[str, int]:
    """Money per the ledgers, after checking that each ledger sums to zero and every journal entry balances.
    `held_fen` is everything on the books but the payroll side (FUNDING): it changes only when money is
    paid in, so any transfer, quota or premium must leave it exactly as it was."""
    totals_all: dict[str, int] = {}
    for admdvs in federation.provinces:
        summary = await client.ledger_summary(admdvs, federation.internal_token)
        assert summary["sum_fen"] == 0, summary
        assert summary["journal_balanced"], summary
        for key, amount_fen in summary["totals_fen"].items():
            totals_all[key] = totals_all.get(key, 0) + amount_fen
    return {
        "citizen_fen": totals_all.get("PA", 0) + totals_all.get("WALLET", 0) + totals_all.get("QUOTA", 0),
        "in_flight_fen": totals_all.get("SYS:IN_FLIGHT", 0),
        "clearing_fen": totals_all.get("SYS:CLEARING", 0),
        "held_fen": -totals_all.get("SYS:FUNDING", 0),
    }
