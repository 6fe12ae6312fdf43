"""Bad input gets a clear 4xx with a stable code, never a 500, and a refused call changes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from launcher.client import FederationClient
from launcher.people import new_person
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, enrol, face_login, me, money_totals

pytestmark = pytest.mark.federation

BAD_ID = "640102199001011230"  # wrong check digit


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def test_refused_transfers_change_nothing(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100", giver_fen=100_000)
    before = await money_totals(client, federation)
    giver_before = await me(client, pair.giver_session)

    async def transfer(body: Any, session: Any = None) -> Any:
        return await client.call(session or pair.giver_session, "POST", "/v1/transfers", body)

    cases = [
        ({"binding_id": pair.binding_id, "amount_fen": 0}, 422, "INVALID_AMOUNT"),
        ({"binding_id": pair.binding_id, "amount_fen": -100}, 422, "INVALID_AMOUNT"),
        ({"binding_id": pair.binding_id, "amount_fen": 1.5}, 422, "INVALID_AMOUNT"),
        ({"binding_id": pair.binding_id, "amount_fen": "100"}, 422, "INVALID_AMOUNT"),
        ({"binding_id": pair.binding_id, "amount_fen": 100_001}, 422, "INSUFFICIENT_FUNDS"),
        ({"binding_id": pair.binding_id, "amount_fen": 200_001}, 422, "TRANSFER_LIMIT_AMOUNT"),
        ({"binding_id": "Bnope", "amount_fen": 100}, 404, "BINDING_NOT_FOUND"),
        ({"amount_fen": 100}, 422, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        response = await transfer(body)
        assert (response.status_code, code_of(response)) == (status, code), (body, response.text)

    # A password session is no face step-up.
    pwd = await client.login(pair.giver.id_no, pair.giver.name, password=pair.giver.password)
    response = await transfer({"binding_id": pair.binding_id, "amount_fen": 100}, pwd)
    assert (response.status_code, code_of(response)) == (403, "STEP_UP_REQUIRED")
    # The relative cannot send on the giver's binding.
    response = await transfer({"binding_id": pair.binding_id, "amount_fen": 100}, pair.relative_session)
    assert response.status_code in (403, 404)

    malformed = await client.http.post(f"{client.node_url('640000')}/v1/transfers", content=b"{not json",
                                       headers={"authorization": f"Bearer {pair.giver_session.token}",
                                                "content-type": "application/json"})
    assert malformed.status_code == 422

    assert await me(client, pair.giver_session) == giver_before
    assert await money_totals(client, federation) == before


async def test_authentication_is_required(federation: Federation, client: FederationClient) -> None:
    url = f"{client.node_url('640000')}/v1/me"
    assert (await client.http.get(url)).status_code == 401
    assert (await client.http.get(url, headers={"authorization": "Bearer forged.token"})).status_code == 401
    person = new_person("620100")
    await enrol(client, person)
    session = await face_login(client, person)
    wrong_node = await client.http.get(url, headers={"authorization": f"Bearer {session.token}"})
    assert (wrong_node.status_code, code_of(wrong_node)) == (403, "WRONG_PROVINCE")
    bad_face = await client.http.post(f"{client.hub_url()}/v1/identity/sessions", json={
        "id_no": person.id_no, "name": person.name, "method": "face", "face_image_b64": "aGVsbG8="})
    assert (bad_face.status_code, code_of(bad_face)) == (401, "AUTHENTICATION_FAILED")
    bad_id = await client.http.post(f"{client.hub_url()}/v1/identity/sessions", json={
        "id_no": BAD_ID, "name": person.name, "method": "password", "password": "x"})
    assert (bad_id.status_code, code_of(bad_id)) == (422, "INVALID_ID_NO")
    admin = await client.http.post(f"{client.node_url('640000')}/v1/admin/persons:import", json={"persons": []})
    assert admin.status_code == 401


async def test_binding_refusals(federation: Federation, client: FederationClient) -> None:
    giver, stranger, resident = new_person("640100"), new_person("620100"), new_person("640100", employee=False)
    await enrol(client, giver, stranger, resident)
    session = await face_login(client, giver)

    async def bind(body: dict[str, Any], who: Any = session) -> Any:
        return await client.call(who, "POST", "/v1/bindings", body)

    not_kin = await bind({"relative_id_no": stranger.id_no, "relative_name": stranger.name, "relation": "parent"})
    assert (not_kin.status_code, code_of(not_kin)) == (422, "KINSHIP_NOT_VERIFIED")
    await client.import_kinship([{"id_no_a": giver.id_no, "id_no_b": stranger.id_no, "relation": "parent"}])
    wrong_name = await bind({"relative_id_no": stranger.id_no, "relative_name": "冒名", "relation": "parent"})
    assert (wrong_name.status_code, code_of(wrong_name)) == (422, "KINSHIP_NOT_VERIFIED")
    wrong_relation = await bind({"relative_id_no": stranger.id_no, "relative_name": stranger.name,
                                 "relation": "spouse"})
    assert (wrong_relation.status_code, code_of(wrong_relation)) == (422, "KINSHIP_NOT_VERIFIED")
    bad_id = await bind({"relative_id_no": BAD_ID, "relative_name": stranger.name, "relation": "parent"})
    assert (bad_id.status_code, code_of(bad_id)) == (422, "INVALID_ID_NO")
    bad_relation = await bind({"relative_id_no": stranger.id_no, "relative_name": stranger.name,
                               "relation": "cousin"})
    assert bad_relation.status_code == 422
    resident_session = await face_login(client, resident)
    resident_gives = await bind({"relative_id_no": giver.id_no, "relative_name": giver.name, "relation": "child"},
                                resident_session)
    assert (resident_gives.status_code, code_of(resident_gives)) == (422, "GIVER_NOT_EMPLOYEE")
    assert (await client.call(session, "GET", "/v1/bindings")).json() == []
    unknown = await client.call(session, "POST", "/v1/bindings/Bnope:confirm")
    assert unknown.status_code in (403, 404)


async def test_import_rejects_invalid_people_individually(federation: Federation,
                                                          client: FederationClient) -> None:
    good = new_person("640100")
    bad = new_person("640100")
    bad_body = bad.import_body() | {"id_no": BAD_ID}
    result = await client.import_persons("640000", [good.import_body(), bad_body,
                                                    good.import_body() | {"phone": "12"}])
    assert result["imported"] == 1
    assert result["rejected"] == [{"index": 1, "code": "INVALID_ID_NO"}, {"index": 2, "code": "INVALID_PHONE"}]
