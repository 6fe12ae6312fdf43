"""The citizen side of the seed stories (issue 4), end to end on the real federation."""

from __future__ import annotations

import uuid

import pytest

from launcher.client import FederationClient
from launcher.people import new_person
from tests.conftest import Federation
from tests.e2e.flows import enrol, face_login, me, money_totals, wait_binding_state, wait_transfer

pytestmark = pytest.mark.federation


async def test_yinchuan_daughter_binds_both_parents_in_gansu_and_sends_500_yuan(
        federation: Federation, client: FederationClient) -> None:
    daughter = new_person("640100", personal_account_fen=800_000)
    father, mother = new_person("620100", employee=False), new_person("620100", employee=False)
    await enrol(client, daughter, father, mother)
    await client.import_kinship([{"id_no_a": daughter.id_no, "id_no_b": parent.id_no, "relation": "parent"}
                                 for parent in (father, mother)])
    her = await face_login(client, daughter)
    bindings = {}
    for parent in (father, mother):
        created = await client.call(her, "POST", "/v1/bindings", {
            "relative_id_no": parent.id_no, "relative_name": parent.name, "relation": "parent"},
            idempotency_key=uuid.uuid4().hex)
        assert created.status_code == 201, created.text
        assert created.json()["relative_name_masked"].endswith("*") or "*" in created.json()["relative_name_masked"]
        parent_session = await face_login(client, parent)
        confirmed = await client.call(parent_session, "POST", f"/v1/bindings/{created.json()['binding_id']}:confirm")
        assert confirmed.json()["state"] == "ACTIVE"
        bindings[parent.id_no] = (created.json()["binding_id"], parent_session)
        await wait_binding_state(client, her, created.json()["binding_id"], "ACTIVE")
    listed = (await client.call(her, "GET", "/v1/bindings")).json()
    assert sorted(b["state"] for b in listed) == ["ACTIVE", "ACTIVE"]

    binding_id, mother_session = bindings[mother.id_no]
    assert (await client.call(mother_session, "POST", "/v1/wallet:open")).status_code == 201
    sent = await client.call(her, "POST", "/v1/transfers", {"binding_id": binding_id, "amount_fen": 50_000},
                             idempotency_key=uuid.uuid4().hex)
    assert sent.status_code == 202
    assert (await wait_transfer(client, her, sent.json()["transfer_id"]))["state"] == "CREDITED"
    notices = [n["text"] for n in (await client.call(mother_session, "GET", "/v1/notifications")).json()]
    assert notices[-1] == "您的共济账户已收到500元"
    assert (await me(client, mother_session))["wallet"]["balance_fen"] == 50_000
    assert (await me(client, her))["personal_account_fen"] == 750_000


async def test_wuzhong_son_sends_his_father_in_shaanxi_1000_yuan_each_month(
        federation: Federation, client: FederationClient) -> None:
    son = new_person("640300", personal_account_fen=0)
    father = new_person("610100", employee=False)
    await enrol(client, son, father)
    await client.import_kinship([{"id_no_a": father.id_no, "id_no_b": son.id_no, "relation": "child"}])
    his = await face_login(client, son)
    father_session = await face_login(client, father)
    await client.call(father_session, "POST", "/v1/wallet:open")
    created = await client.call(his, "POST", "/v1/bindings", {
        "relative_id_no": father.id_no, "relative_name": father.name, "relation": "parent"})
    assert created.status_code == 201, created.text  # the registry says it the other way round: son is child
    binding_id = created.json()["binding_id"]
    await client.call(father_session, "POST", f"/v1/bindings/{binding_id}:confirm")
    await wait_binding_state(client, his, binding_id, "ACTIVE")
    before = await money_totals(client, federation)
    for month in (1, 2):
        # Payroll credits the personal account each month; the son passes 1,000 yuan on.
        credit = await client.http.post(
            f"{client.node_url('640000')}/v1/admin/accounts:credit-monthly",
            json={"credits": [{"id_no": son.id_no, "amount_fen": 120_000}]},
            headers={"authorization": f"Bearer {federation.operator_token}", "idempotency-key": uuid.uuid4().hex})
        assert credit.status_code == 200, credit.text
        sent = await client.call(his, "POST", "/v1/transfers", {"binding_id": binding_id, "amount_fen": 100_000})
        assert (await wait_transfer(client, his, sent.json()["transfer_id"]))["state"] == "CREDITED", month
    assert (await me(client, father_session))["wallet"]["balance_fen"] == 200_000
    assert (await me(client, his))["personal_account_fen"] == 40_000
    received = (await client.call(father_session, "GET", "/v1/transfers?role=received")).json()
    assert [t["amount_fen"] for t in received] == [100_000, 100_000]
    after = await money_totals(client, federation)
    assert after["held_fen"] - before["held_fen"] == 240_000  # only the payroll credits are new money
