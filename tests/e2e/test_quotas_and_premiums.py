"""Quotas (共济额度) and resident premiums on the real federation: the Xiamen son's yearly quota for his mother
in Lanzhou pays her resident premium; lowering and unbinding release only the unused part."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest

from launcher.client import FederationClient
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, eventually, me, money_totals, send, wait_transfer

pytestmark = pytest.mark.federation

YEAR = datetime.now().year



def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def test_xiamen_son_quota_pays_his_mothers_premium_and_releases_the_rest(
        federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "350200", "620100", relation="parent", giver_fen=2_000_000)
    before = await money_totals(client, federation)
    son, mother = pair.giver_session, pair.relative_session
    start_fen = (await me(client, son))["personal_account_fen"]

    quota = await client.call(son, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                              {"annual_quota_fen": 1_000_000}, idempotency_key=uuid.uuid4().hex)
    assert quota.status_code == 200, quota.text
    assert quota.json()["reserved_fen"] == 1_000_000
    son_view = await me(client, son)
    assert son_view["personal_account_fen"] == start_fen - 1_000_000  # reserved: he can no longer spend it
    assert son_view["quotas_granted"] == [{"binding_id": pair.binding_id, "year": YEAR,
                                           "annual_quota_fen": 1_000_000, "used_fen": 0}]

    async def mother_quota() -> list[dict[str, Any]]:
        return list((await me(client, mother))["quotas_received"])

    async def mirror_has(annual_fen: int, used_fen: int) -> bool:
        return await mother_quota() == [{"binding_id": pair.binding_id, "year": YEAR,
                                         "annual_quota_fen": annual_fen, "used_fen": used_fen}]

    await eventually(lambda: mirror_has(1_000_000, 0), "mother sees the 10,000-yuan quota")

    premium = {"beneficiary_id_no": pair.relative.id_no, "year": YEAR, "amount_fen": 40_000, "payer": "quota",
               "binding_id": pair.binding_id}
    paid = await client.call(son, "POST", "/v1/premiums", premium, idempotency_key=uuid.uuid4().hex)
    assert paid.status_code == 201, paid.text
    assert paid.json()["state"] == "PAID" and paid.json()["beneficiary_admdvs"] == "620000"
    assert await mirror_has(1_000_000, 40_000)
    again = await client.call(son, "POST", "/v1/premiums", premium, idempotency_key=uuid.uuid4().hex)
    assert (again.status_code, code_of(again)) == (409, "PREMIUM_ALREADY_PAID")
    self_premium = await client.call(son, "POST", "/v1/premiums", premium | {
        "beneficiary_id_no": pair.giver.id_no})
    assert (self_premium.status_code, code_of(self_premium)) == (422, "PREMIUM_NOT_RESIDENT")
    notices = [n["text"] for n in (await client.call(mother, "GET", "/v1/notifications")).json()]
    assert f"您的{YEAR}年城乡居民医保费400元已缴纳" in notices

    async def son_has(pa_fen: int, used_fen: int) -> bool:
        view = await me(client, son)
        granted = view["quotas_granted"]
        return view["personal_account_fen"] == pa_fen and bool(granted) and granted[0]["used_fen"] == used_fen

    await eventually(lambda: son_has(start_fen - 1_000_000, 40_000), "the spend reaches the son's node")

    lowered = await client.call(son, "PUT", f"/v1/bindings/{pair.binding_id}/quota", {"annual_quota_fen": 500_000})
    assert lowered.status_code == 200, lowered.text
    await eventually(lambda: mirror_has(500_000, 40_000), "the mirror shrinks first")
    await eventually(lambda: son_has(start_fen - 500_000, 40_000), "then only the unused part is released")

    ended = await client.call(mother, "DELETE", f"/v1/bindings/{pair.binding_id}")
    assert ended.status_code == 200 and ended.json()["state"] == "ENDED"
    await eventually(lambda: son_has_nothing_reserved(client, son, start_fen - 40_000), "unbinding releases the rest")
    assert await mother_quota() == []

    after = await money_totals(client, federation)
    assert after["held_fen"] == before["held_fen"]


async def son_has_nothing_reserved(client: FederationClient, son: Any, pa_fen: int) -> bool:
    view = await me(client, son)
    return bool(view["personal_account_fen"] == pa_fen and view["quotas_granted"] == [])


async def test_quota_refusals_change_nothing(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100", giver_fen=300_000)
    before = await me(client, pair.giver_session)
    too_much = await client.call(pair.giver_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                                 {"annual_quota_fen": 300_001})
    assert (too_much.status_code, code_of(too_much)) == (422, "INSUFFICIENT_FUNDS")
    for bad in (-1, 1.5, "100", None):
        response = await client.call(pair.giver_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                                     {"annual_quota_fen": bad})
        assert (response.status_code, code_of(response)) == (422, "INVALID_AMOUNT"), bad
    relative_sets = await client.call(pair.relative_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                                      {"annual_quota_fen": 100})
    assert relative_sets.status_code in (403, 404)
    pwd = await client.login(pair.giver.id_no, pair.giver.name, password=pair.giver.password)
    no_face = await client.call(pwd, "PUT", f"/v1/bindings/{pair.binding_id}/quota", {"annual_quota_fen": 100})
    assert (no_face.status_code, code_of(no_face)) == (403, "STEP_UP_REQUIRED")
    assert await me(client, pair.giver_session) == before


async def test_wallet_pays_own_premium_once(federation: Federation, client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    accepted = await send(client, pair, 50_000)
    await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    mother = pair.relative_session
    premium = {"beneficiary_id_no": pair.relative.id_no, "year": YEAR, "amount_fen": 40_000, "payer": "wallet"}
    key = uuid.uuid4().hex
    paid = await client.call(mother, "POST", "/v1/premiums", premium, idempotency_key=key)
    assert paid.status_code == 201, paid.text
    replay = await client.call(mother, "POST", "/v1/premiums", premium, idempotency_key=key)
    assert replay.json() == paid.json()
    assert (await me(client, mother))["wallet"]["balance_fen"] == 10_000
    again = await client.call(mother, "POST", "/v1/premiums", premium)
    assert (again.status_code, code_of(again)) == (409, "PREMIUM_ALREADY_PAID")
    too_much = await client.call(mother, "POST", "/v1/premiums", premium | {"year": YEAR + 1})
    assert (too_much.status_code, code_of(too_much)) == (422, "INSUFFICIENT_FUNDS")
    assert (await me(client, mother))["wallet"]["balance_fen"] == 10_000
