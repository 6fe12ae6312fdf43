"""Binding life cycle and transfer rules on the real federation (issue 4 points 1 and 4): unbinding by either
party, many-to-many, bindings ending with a party's insurance or region, the refund of a transfer in flight
when its binding ends, and the limits. Every refusal is a 4xx with its stable code that changes nothing.

Quiet hours are off in the test federation (CI runs at any hour): the 23:00 refusal and the receiver's
acceptance (a per-province setting) are played through the real use cases with a set clock in
tests/integration/test_lifecycle_flows.py."""

from __future__ import annotations

import signal
import uuid
from typing import Any

import pytest

from launcher import supervisor
from launcher.client import FederationClient
from launcher.people import new_person
from tests.conftest import Federation
from tests.e2e.flows import (
    Pair,
    bind,
    bound_pair,
    enrol,
    eventually,
    face_login,
    hub_has_hop,
    hub_heard_every_answer,
    hub_hops,
    me,
    money_totals,
    notices,
    operator_post,
    send,
    wait_binding_state,
    wait_transfer,
)

pytestmark = pytest.mark.federation


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def transfer(client: FederationClient, pair: Pair, amount_fen: int) -> Any:
    return await client.call(pair.giver_session, "POST", "/v1/transfers",
                             {"binding_id": pair.binding_id, "amount_fen": amount_fen},
                             idempotency_key=uuid.uuid4().hex)


async def refused_changes_nothing(client: FederationClient, federation: Federation, pair: Pair, call: Any,
                                  status: int, code: str) -> None:
    """`call()` is refused with (status, code), and neither party nor the federation's money changed."""
    before = (await me(client, pair.giver_session), await me(client, pair.relative_session),
              await money_totals(client, federation))
    response = await call()
    assert (response.status_code, code_of(response)) == (status, code), response.text
    after = (await me(client, pair.giver_session), await me(client, pair.relative_session),
             await money_totals(client, federation))
    assert after == before


async def assert_ended_everywhere(client: FederationClient, pair: Pair, reason: str) -> None:
    """Both parties' nodes show the binding ENDED for `reason` (each node keeps its own replica)."""
    for session in (pair.giver_session, pair.relative_session):
        await wait_binding_state(client, session, pair.binding_id, "ENDED", reason=reason)


# ------------------------------------------------------------------------------------------ unbinding


@pytest.mark.parametrize("party", ["giver", "relative"])
async def test_either_party_can_unbind(federation: Federation, client: FederationClient, party: str) -> None:
    pair = await bound_pair(client, "640100", "620100")
    session = pair.giver_session if party == "giver" else pair.relative_session
    ended = await client.call(session, "DELETE", f"/v1/bindings/{pair.binding_id}",
                              idempotency_key=uuid.uuid4().hex)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["state"], ended.json()["ended_reason"]) == ("ENDED", "UNBOUND")
    await assert_ended_everywhere(client, pair, "UNBOUND")
    assert (await notices(client, pair.giver_session))[-1].endswith("的共济绑定已解除")
    assert (await notices(client, pair.relative_session))[-1] == "您与亲属的医保钱包共济绑定已解除"
    await refused_changes_nothing(client, federation, pair, lambda: transfer(client, pair, 100), 422,
                                  "BINDING_NOT_ACTIVE")
    again = await client.call(session, "DELETE", f"/v1/bindings/{pair.binding_id}")
    assert again.status_code == 200 and again.json()["state"] == "ENDED"  # unbinding twice is harmless


async def test_many_to_many(federation: Federation, client: FederationClient) -> None:
    """A daughter in Yinchuan binds both parents (Gansu, Shaanxi); her mother is bound by her brother in
    Xiamen too. Each binding carries its own transfers to its own relative."""
    daughter, brother = new_person("640100"), new_person("350200")
    mother, father = new_person("620100", employee=False), new_person("610100", employee=False)
    await enrol(client, daughter, brother, mother, father)
    sessions = {p.id_no: await face_login(client, p) for p in (daughter, brother, mother, father)}
    for parent in (mother, father):
        assert (await client.call(sessions[parent.id_no], "POST", "/v1/wallet:open")).status_code == 201
    pairs = [await bind(client, daughter, sessions[daughter.id_no], mother, sessions[mother.id_no]),
             await bind(client, daughter, sessions[daughter.id_no], father, sessions[father.id_no]),
             await bind(client, brother, sessions[brother.id_no], mother, sessions[mother.id_no])]
    assert len({pair.binding_id for pair in pairs}) == 3
    listed = (await client.call(sessions[mother.id_no], "GET", "/v1/bindings")).json()
    assert {b["binding_id"] for b in listed} == {pairs[0].binding_id, pairs[2].binding_id}

    before = await money_totals(client, federation)
    sent = [await send(client, pair, amount_fen) for pair, amount_fen in zip(pairs, (10_000, 20_000, 30_000),
                                                                             strict=True)]
    for pair, accepted in zip(pairs, sent, strict=True):
        assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"
    assert (await me(client, sessions[mother.id_no]))["wallet"]["balance_fen"] == 40_000
    assert (await me(client, sessions[father.id_no]))["wallet"]["balance_fen"] == 20_000
    assert (await me(client, sessions[daughter.id_no]))["personal_account_fen"] == 1_000_000 - 30_000
    assert (await me(client, sessions[brother.id_no]))["personal_account_fen"] == 1_000_000 - 30_000
    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"] and after["in_flight_fen"] == 0

    # Unbinding one of the mother's bindings leaves the other working.
    assert (await client.call(sessions[mother.id_no], "DELETE", f"/v1/bindings/{pairs[0].binding_id}")
            ).status_code == 200
    await assert_ended_everywhere(client, pairs[0], "UNBOUND")
    still = await send(client, pairs[2], 100)
    assert (await wait_transfer(client, pairs[2].giver_session, still["transfer_id"]))["state"] == "CREDITED"


# ------------------------------------------------------------------------------------------ insurance and region


@pytest.mark.parametrize("whose", ["relative", "giver"])
async def test_end_insurance_ends_the_persons_bindings(federation: Federation, client: FederationClient,
                                                       whose: str) -> None:
    pair = await bound_pair(client, "640100", "620100")
    other = await bound_pair(client, "640100", "610100")  # an unrelated binding that must stay
    person = pair.relative if whose == "relative" else pair.giver
    ended = await operator_post(client, person.admdvs, f"/v1/admin/persons/{person.id_no}:end-insurance")
    assert ended.status_code == 200, ended.text
    assert (ended.json()["insured"], ended.json()["binding_end_reason"]) == (False, "INSURANCE_ENDED")
    await assert_ended_everywhere(client, pair, "INSURANCE_ENDED")
    await refused_changes_nothing(client, federation, pair, lambda: transfer(client, pair, 100), 422,
                                  "BINDING_NOT_ACTIVE")
    await wait_binding_state(client, other.giver_session, other.binding_id, "ACTIVE")
    # Their insurance ended, not their access: they still log in and see their own records.
    session = await face_login(client, person)
    assert (await client.call(session, "GET", "/v1/bindings")).status_code == 200


async def test_change_pooling_within_the_pool_changes_nothing_else(federation: Federation,
                                                                   client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    moved = await operator_post(client, "640000", f"/v1/admin/persons/{pair.giver.id_no}:change-pooling",
                                {"pooling_admdvs": "640104"})  # 兴庆区, inside the 银川 pool
    assert moved.status_code == 200, moved.text
    assert (moved.json()["pooling_admdvs"], moved.json()["binding_end_reason"]) == ("640104", None)
    accepted = await send(client, pair, 1_000)
    assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"
    await wait_binding_state(client, pair.relative_session, pair.binding_id, "ACTIVE")


async def test_change_pooling_to_another_region_ends_the_bindings(federation: Federation,
                                                                  client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    moved = await operator_post(client, "620000", f"/v1/admin/persons/{pair.relative.id_no}:change-pooling",
                                {"pooling_admdvs": "620200"})  # 嘉峪关: another pool
    assert moved.status_code == 200, moved.text
    assert moved.json()["binding_end_reason"] == "MOVED_REGION"
    await assert_ended_everywhere(client, pair, "MOVED_REGION")
    await refused_changes_nothing(client, federation, pair, lambda: transfer(client, pair, 100), 422,
                                  "BINDING_NOT_ACTIVE")
    outside = await operator_post(client, "620000", f"/v1/admin/persons/{pair.relative.id_no}:change-pooling",
                                  {"pooling_admdvs": "640100"})
    assert (outside.status_code, code_of(outside)) == (422, "INVALID_POOLING_ADMDVS")
    unknown = await operator_post(client, "620000", f"/v1/admin/persons/{pair.giver.id_no}:end-insurance")
    assert (unknown.status_code, code_of(unknown)) == (404, "PERSON_NOT_FOUND")
    bad = await operator_post(client, "620000", "/v1/admin/persons/640102199001011230:end-insurance")
    assert (bad.status_code, code_of(bad)) == (422, "INVALID_ID_NO")


# ------------------------------------------------------------------------------------------ in flight


async def test_a_transfer_in_flight_when_its_binding_ends_is_settled_exactly_once(
        federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    giver_start = (await me(client, pair.giver_session))["personal_account_fen"]
    before = await money_totals(client, federation)
    supervisor.signal_service(federation.home, "node-620000", signal.SIGTERM)
    try:
        accepted = await send(client, pair, 25_000)
        await eventually(lambda: hub_has_hop(client, accepted["transfer_id"], "ROUTING"),
                         "the hub routes it towards the stopped node")
        ended = await client.call(pair.giver_session, "DELETE", f"/v1/bindings/{pair.binding_id}",
                                  idempotency_key=uuid.uuid4().hex)
        assert ended.status_code == 200, ended.text
        pending = await client.call(pair.giver_session, "GET", f"/v1/transfers/{accepted['transfer_id']}")
        assert pending.json()["state"] == "ACCEPTED"  # never refunded before the destination answers
    finally:
        supervisor.restart_service(federation.home, "node-620000")
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    wallet_fen = (await me(client, pair.relative_session))["wallet"]["balance_fen"]
    giver_fen = (await me(client, pair.giver_session))["personal_account_fen"]
    if done["state"] == "REFUNDED":  # the destination learnt of the end before it could credit
        assert done["reason"] in ("BINDING_ENDED", "BINDING_NOT_ACTIVE")
        assert (wallet_fen, giver_fen) == (0, giver_start)
    else:  # it had credited first: the cancel was answered CREDITED
        assert done["state"] == "CREDITED"
        assert (wallet_fen, giver_fen) == (25_000, giver_start - 25_000)
    await eventually(lambda: hub_heard_every_answer(client, accepted["transfer_id"]),
                     "the destination answers the credit and the cancel")
    hops = await hub_hops(client, accepted["transfer_id"])
    assert [hop for hop in hops if hop.startswith("DECIDED_")] == [f"DECIDED_{done['state']}"], hops
    again = await client.call(pair.giver_session, "GET", f"/v1/transfers/{accepted['transfer_id']}")
    assert again.json()["state"] == done["state"]
    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"] and after["in_flight_fen"] == 0
    await assert_ended_everywhere(client, pair, "UNBOUND")


# ------------------------------------------------------------------------------------------ rules


async def test_a_fourth_transfer_in_a_day_is_refused(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    for _ in range(3):
        accepted = await send(client, pair, 100)
        assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"
    await refused_changes_nothing(client, federation, pair, lambda: transfer(client, pair, 100), 422,
                                  "TRANSFER_LIMIT_DAILY")


async def test_more_than_2000_yuan_is_refused(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100", giver_fen=1_000_000)
    await refused_changes_nothing(client, federation, pair, lambda: transfer(client, pair, 200_001), 422,
                                  "TRANSFER_LIMIT_AMOUNT")
    accepted = await send(client, pair, 200_000)  # exactly 2,000 yuan is allowed
    assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"


async def test_a_resident_cannot_give(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    resident, resident_session = pair.relative, pair.relative_session
    reversed_pair = Pair(resident, pair.giver, resident_session, pair.giver_session, pair.binding_id)
    await refused_changes_nothing(client, federation, reversed_pair, lambda: client.call(
        resident_session, "POST", "/v1/bindings",
        {"relative_id_no": pair.giver.id_no, "relative_name": pair.giver.name, "relation": "child"},
        idempotency_key=uuid.uuid4().hex), 422, "GIVER_NOT_EMPLOYEE")
    assert len((await client.call(resident_session, "GET", "/v1/bindings")).json()) == 1


async def test_a_relative_name_that_does_not_match_is_refused(federation: Federation,
                                                              client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    sibling = new_person("620100", employee=False)
    await enrol(client, sibling)
    await client.import_kinship([{"id_no_a": pair.giver.id_no, "id_no_b": sibling.id_no, "relation": "sibling"}])
    await refused_changes_nothing(client, federation, pair, lambda: client.call(
        pair.giver_session, "POST", "/v1/bindings",
        {"relative_id_no": sibling.id_no, "relative_name": "冒名顶替", "relation": "sibling"},
        idempotency_key=uuid.uuid4().hex), 422, "KINSHIP_NOT_VERIFIED")
    assert len((await client.call(pair.giver_session, "GET", "/v1/bindings")).json()) == 1
