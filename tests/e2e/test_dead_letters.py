"""Dead letters on the real federation: a message its handler cannot apply is parked instead of freezing its
partition, a later message with its key waits behind it, other traffic goes on, and operators see and replay
every service's dead letters at the hub."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from launcher.client import FederationClient
from launcher.topology import HOST, KAFKA_PORT
from shared.contracts import topics
from shared.contracts.envelope import Envelope
from shared.contracts.events import TransferCancel, TransferCredit
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, eventually, me, money_totals, send, wait_transfer

pytestmark = pytest.mark.federation
DESTINATION = "620000"


def _malformed(message_type: str) -> Envelope:
    """A valid envelope whose payload its type's handler cannot read (no transfer_id, no amount)."""
    return Envelope(type=message_type, id=uuid.uuid4().hex, source="e2e-test", time=datetime.now(UTC),
                    trace_id=uuid.uuid4().hex, data={"unexpected": True})


async def _publish(key: str, *envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=f"{HOST}:{KAFKA_PORT}", acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for envelope in envelopes:
            await producer.send_and_wait(topics.province_inbound(DESTINATION), envelope.to_bytes(), key=key.encode())
    finally:
        await producer.stop()


async def _listing(client: FederationClient, state: str | None = None) -> dict[str, Any]:
    query = f"?state={state}" if state else ""
    response = await client.http.get(f"{client.hub_url()}/v1/ops/dead-letters{query}",
                                     headers={"authorization": f"Bearer {client.operator_token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _replay(client: FederationClient, dead_letter_id: str, key: str | None = None) -> Any:
    return await client.http.post(f"{client.hub_url()}/v1/ops/dead-letters/{dead_letter_id}:replay", headers={
        "authorization": f"Bearer {client.operator_token}", "idempotency-key": key or uuid.uuid4().hex})


async def test_a_poison_message_is_parked_its_key_waits_and_the_partition_goes_on(
        federation: Federation, client: FederationClient) -> None:
    key = f"T{uuid.uuid4().hex}"
    credit, cancel = _malformed(TransferCredit.TYPE), _malformed(TransferCancel.TYPE)
    await _publish(key, credit, cancel)

    parked: dict[str, dict[str, Any]] = {}

    async def both_parked() -> bool:
        listed = await _listing(client, "PARKED")
        parked.clear()
        parked.update({item["message_id"]: item for item in listed["dead_letters"]
                       if item["message_id"] in (credit.id, cancel.id)})
        return len(parked) == 2

    await eventually(both_parked, "the malformed credit and its cancel parked at the destination node")
    head, behind = parked[credit.id], parked[cancel.id]
    node = f"node-{DESTINATION}"
    assert head["service"] == node and head["id"].startswith(f"{node}:") and head["key"] == key
    assert head["topic"] == topics.province_inbound(DESTINATION) and head["message_type"] == TransferCredit.TYPE
    assert head["state"] == "PARKED" and head["blocked_by"] is None and head["attempts"] >= 1
    # Parked at once, before its batch ran (shared/dispatch.py): the fields named, never their values.
    assert head["error"].startswith(f"undecodable: invalid {TransferCredit.TYPE} payload: transfer_id: Field required")
    assert behind["state"] == "PARKED" and behind["blocked_by"] == head["id"] and behind["attempts"] == 0
    assert "payload" not in head

    # Normal traffic to the same node goes on (other keys; the same three partitions).
    before = await money_totals(client, federation)
    pair = await bound_pair(client, "640100", "620100", relation="parent")
    accepted = await send(client, pair, 20_000)
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED"
    assert (await me(client, pair.relative_session))["wallet"]["balance_fen"] == 20_000
    after = await money_totals(client, federation)
    assert after["held_fen"] - before["held_fen"] == 1_000_000 and after["in_flight_fen"] == 0

    # Every service answered the listing: the hub itself, each node, the gateway.
    listed = await _listing(client)
    assert listed["unreachable"] == []
    assert set(listed["services"]) == {"hub", "gateway", *(f"node-{code}" for code in federation.provinces)}

    # Still malformed: the replay runs it again, it fails again and stays parked, the cancel behind it.
    replay_key = uuid.uuid4().hex
    again = await _replay(client, head["id"], replay_key)
    assert again.status_code == 200, again.text
    assert again.json() == {"id": head["id"], "service": node, "state": "PARKED", "replayed": [],
                            "still_parked": [head["id"], behind["id"]], "error": again.json()["error"]}
    assert (await _replay(client, head["id"], replay_key)).json() == again.json()  # same key, same answer
    blocked = await _replay(client, behind["id"])
    assert blocked.status_code == 409 and blocked.json()["error"]["code"] == "DEAD_LETTER_BLOCKED"
    for unknown in (f"{node}:999999999", "node-999999:1", "nobody:1"):
        missing = await _replay(client, unknown)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "DEAD_LETTER_NOT_FOUND", unknown
    relisted = {item["id"]: item for item in (await _listing(client, "PARKED"))["dead_letters"]}
    assert relisted[head["id"]]["attempts"] == head["attempts"] + 1
    assert relisted[behind["id"]]["blocked_by"] == head["id"]
    # No money moved for the parked messages: every ledger still sums to zero, nothing in flight.
    assert (await money_totals(client, federation))["in_flight_fen"] == 0

    bad_filter = await client.http.get(f"{client.hub_url()}/v1/ops/dead-letters?state=LOST",
                                       headers={"authorization": f"Bearer {client.operator_token}"})
    assert bad_filter.status_code == 422 and bad_filter.json()["error"]["code"] == "INVALID_STATE"
    anonymous = await client.http.get(f"{client.hub_url()}/v1/ops/dead-letters")
    assert anonymous.status_code == 401
