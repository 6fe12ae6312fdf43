"""Binding life cycle, transfer rules and the receiver's acceptance (issue 4 points 1 and 4), in process: the
real use cases, HTTP routes and Kafka handlers of two nodes and the hub on their own migrated databases, the
outboxes standing in for Kafka (tests/support/inprocess.py), and a FixedClock, so that races are played out in
every order and the time of day is set rather than waited for.

Each flow ends with the money check: every ledger balances, nothing is left in flight, and the citizens hold
what was funded (a transfer ends credited once or refunded once)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.national_hub.service_layer import transfers as hub_transfers
from services.national_hub.service_layer.bindings import BINDINGS as HUB_BINDINGS
from services.national_hub.service_layer.directory import DIRECTORY
from services.province_node.bootstrap import bootstrap as node_bootstrap
from services.province_node.config import TransferOverride
from services.province_node.domain import ledger
from services.province_node.domain.errors import DomainError
from services.province_node.service_layer import bindings as node_bindings
from services.province_node.service_layer import persons as node_persons
from services.province_node.service_layer import transfers as node_transfers
from shared import tokens
from shared.clock import SHANGHAI
from shared.contracts import topics
from shared.contracts.events import (
    BindingChanged,
    PersonStatusChanged,
    TransferAwaitingAcceptance,
    TransferCancel,
    TransferCredit,
    TransferCreditResult,
    TransferRequested,
)
from shared.contracts.internal_api import LedgerSummary
from shared.db import ReadView, UnitOfWork
from shared.errors import ApiError
from shared.ids import make_id_no
from tests.support.inprocess import (
    DESTINATION,
    SOURCE,
    TRANSFER_TIMEOUT_S,
    InProcessFederation,
    RecordingTransport,
    wired_hub_client,
)
from tests.support.stories import (
    GIVER_PA_FEN,
    Person,
    active_binding,
    assert_money_conserved,
    balance_fen,
    end_binding,
    family,
    import_kinship,
    import_person,
    open_wallet,
    send_transfer,
    transfer_out_state,
)
from tests.support.wire import SAMPLES, Wired, consumer_accepts, key_tree, load_sample

AMOUNT_FEN = 50_000
OPERATOR = {"authorization": "Bearer contract-test-operator-token"}
# 2025-01-16 06:00 in Asia/Shanghai: when a transfer arriving on the 15th (the fixture starts at 10:00 there)
# stops being acceptable.
NEXT_0600 = datetime(2025, 1, 16, 6, 0, tzinfo=SHANGHAI)


# ------------------------------------------------------------------------------------------ helpers


def node_app(fed: InProcessFederation, admdvs: str) -> FastAPI:
    """The node's real app (routes, auth, run_idempotent, error handlers) over the fixture's context."""
    ctx = fed.node(admdvs)
    app = node_bootstrap(ctx.settings, fed.clock)
    app.state.ctx = ctx
    return app


@pytest.fixture
async def http(fed: InProcessFederation) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    clients = {admdvs: httpx.AsyncClient(transport=httpx.ASGITransport(app=node_app(fed, admdvs)),
                                         base_url=f"http://node-{admdvs}") for admdvs in fed.nodes}
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


def bearer(fed: InProcessFederation, person: Person) -> dict[str, str]:
    """A citizen token as the hub issues it after a face verification just now."""
    token = tokens.issue(fed.node(person.admdvs).settings.token_key.encode(), person.claims(fed.clock.now()))
    return {"authorization": f"Bearer {token}"}


def keyed(headers: dict[str, str]) -> dict[str, str]:
    return headers | {"idempotency-key": uuid.uuid4().hex}


def require_acceptance(fed: InProcessFederation, admdvs: str = DESTINATION) -> None:
    """YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES=<admdvs> at that node."""
    ctx = fed.node(admdvs)
    ctx.settings = ctx.settings.model_copy(update={"transfer_accept_required_provinces": admdvs})
    assert ctx.settings.receivers_must_accept


async def hub_transfer(fed: InProcessFederation, transfer_id: str) -> Any:
    async with UnitOfWork(fed.hub.db) as uow:
        return (await uow.execute(sa.select(hub_transfers.TRANSFERS).where(
            hub_transfers.TRANSFERS.c.transfer_id == transfer_id))).one()


async def transfer_in(fed: InProcessFederation, transfer_id: str, admdvs: str = DESTINATION) -> Any:
    async with UnitOfWork(fed.node(admdvs).db) as uow:
        return (await uow.execute(sa.select(node_transfers.IN).where(
            node_transfers.IN.c.transfer_id == transfer_id))).first()


async def out_reason(fed: InProcessFederation, giver: Person, transfer_id: str) -> str | None:
    async with UnitOfWork(fed.node(giver.admdvs).db) as uow:
        reason: str | None = (await uow.execute(sa.select(node_transfers.OUT.c.reason).where(
            node_transfers.OUT.c.transfer_id == transfer_id))).scalar_one()
    return reason


async def replica(fed: InProcessFederation, admdvs: str, binding_id: str) -> Any:
    async with UnitOfWork(fed.node(admdvs).db) as uow:
        return (await uow.execute(sa.select(node_bindings.BINDINGS).where(
            node_bindings.BINDINGS.c.binding_id == binding_id))).one()


async def notices_of(fed: InProcessFederation, person: Person) -> list[str]:
    async with ReadView(fed.node(person.admdvs).db) as view:
        return [row["text"] for row in await node_bindings.list_notifications(view, person.psn_no)]


def without_sms_codes(texts: list[str]) -> list[str]:
    """The binding request's notice ends with a fresh 6-digit SMS code (issue 13): compared without it."""
    return [re.sub(r"确认 \d{6}", "确认 ######", text) for text in texts]


async def routed_but_not_delivered(fed: InProcessFederation, giver: Person, binding_id: str) -> tuple[str, Wired]:
    """A transfer the hub routed whose TransferCredit has not reached the destination yet (returned, held)."""
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    await fed.deliver(await fed.take_outbox(fed.node(giver.admdvs).db))
    [credit] = await fed.take_outbox(fed.hub.db)
    assert credit.type == TransferCredit.TYPE
    return transfer_id, credit


async def refused(ctx_call: Any) -> str:
    with pytest.raises(DomainError) as refusal:
        await ctx_call
    return refusal.value.code


async def outbox_is_empty(fed: InProcessFederation) -> bool:
    return await fed.take_all() == []


# ------------------------------------------------------------------------------------------ unbinding


async def test_unbinding_refunds_a_transfer_the_destination_has_not_seen(fed: InProcessFederation) -> None:
    """The binding ends while the credit is on its way; the destination learns of the end first."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id, late_credit = await routed_but_not_delivered(fed, giver, binding_id)

    await end_binding(fed, giver, binding_id)
    hub_out = await fed.take_outbox(fed.hub.db)
    assert sorted(m.type for m in hub_out) == sorted([BindingChanged.TYPE] * 2 + [TransferCancel.TYPE])
    cancel = next(m for m in hub_out if m.type == TransferCancel.TYPE)
    assert consumer_accepts(cancel) == TransferCancel(transfer_id=transfer_id, reason="BINDING_ENDED")
    assert (await hub_transfer(fed, transfer_id)).state == "CANCEL_REQUESTED"

    # The BindingChanged reaches the destination before the credit (another partition), then credit and cancel.
    await fed.deliver([m for m in hub_out if m.type == BindingChanged.TYPE])
    await fed.deliver([late_credit, cancel])
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await out_reason(fed, giver, transfer_id) == "BINDING_NOT_ACTIVE"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    assert await balance_fen(fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN
    assert (await notices_of(fed, giver))[-1] == "您的共济转账500元已退回个人账户（共济绑定已解除）"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_unbinding_after_the_credit_keeps_the_credit(fed: InProcessFederation) -> None:
    """The destination credited before it heard of the end: the cancel is answered CREDITED, nothing refunded."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id, credit = await routed_but_not_delivered(fed, giver, binding_id)
    await fed.deliver([credit])
    [slow_result] = await fed.take_outbox(fed.node(DESTINATION).db)  # credited; its answer not yet at the hub

    await end_binding(fed, mother, binding_id)  # the relative unbinds
    assert (await hub_transfer(fed, transfer_id)).state == "CANCEL_REQUESTED"
    await fed.pump()  # the cancel is answered CREDITED
    await fed.deliver([slow_result])
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    async with UnitOfWork(fed.hub.db) as uow:
        owed = (await uow.execute(sa.select(sa.func.count()).select_from(hub_transfers.OBLIGATIONS))).scalar()
    assert owed == 1
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_a_transfer_reaching_the_hub_after_the_end_is_refunded(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    [requested] = await fed.take_outbox(fed.node(SOURCE).db)  # still in Kafka when the binding ends
    await end_binding(fed, giver, binding_id)
    await fed.pump()
    await fed.deliver([requested])
    moved = await fed.pump()
    assert [m.type for m in moved] == ["wallet.transfer.settled.v1"]  # never routed to the destination
    assert await out_reason(fed, giver, transfer_id) == "BINDING_NOT_ACTIVE"
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_both_parties_are_told_of_a_binding_created_and_ended(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    assert without_sms_codes(await notices_of(fed, mother)) == [
        "您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认，或回复“确认 ######”即可完成绑定"]
    await end_binding(fed, giver, binding_id)
    await fed.pump()
    assert (await notices_of(fed, mother))[-1] == "您与亲属的医保钱包共济绑定已解除"
    assert await notices_of(fed, giver) == ["您与李*英的共济绑定已发起，等待亲属确认", "您与李*英的共济绑定已生效",
                                            "您与李*英的共济绑定已解除"]
    await end_binding(fed, giver, binding_id)  # ending twice answers ENDED again and tells nobody twice
    await fed.pump()
    assert len(await notices_of(fed, mother)) == 2 and len(await notices_of(fed, giver)) == 3


# ------------------------------------------------------------------------------------------ person status


async def three_bindings(fed: InProcessFederation) -> tuple[dict[str, Person], dict[str, str]]:
    """Many to many: a daughter binds her mother and her husband; the mother is bound by her son too."""
    daughter, mother = await family(fed)
    husband = await import_person(fed, SOURCE, "64010219830511003", "张伟", insutype="310")
    son = await import_person(fed, SOURCE, "64010219800202005", "王强", insutype="310",
                              personal_account_fen=GIVER_PA_FEN)
    await import_kinship(fed, daughter, husband, "spouse")
    await import_kinship(fed, son, mother, "parent")
    people = {"daughter": daughter, "mother": mother, "husband": husband, "son": son}
    for person in (mother, husband):
        await open_wallet(fed, person)
    links = {"daughter-mother": await active_binding(fed, daughter, mother),
             "daughter-husband": await active_binding(fed, daughter, husband, "spouse"),
             "son-mother": await active_binding(fed, son, mother)}
    return people, links


async def test_many_to_many_transfers_each_reach_their_relative(fed: InProcessFederation) -> None:
    people, links = await three_bindings(fed)
    sent = [await send_transfer(fed, people["daughter"], links["daughter-mother"], 10_000),
            await send_transfer(fed, people["daughter"], links["daughter-husband"], 20_000),
            await send_transfer(fed, people["son"], links["son-mother"], 30_000)]
    await fed.pump()
    assert [await transfer_out_state(fed, people["son" if i == 2 else "daughter"], t)
            for i, t in enumerate(sent)] == ["CREDITED"] * 3
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(people["mother"].psn_no)) == 40_000
    assert await balance_fen(fed, SOURCE, ledger.wallet_account(people["husband"].psn_no)) == 20_000
    await assert_money_conserved(fed, 2 * GIVER_PA_FEN)


async def test_end_insurance_ends_every_binding_of_the_person_on_both_sides(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    people, links = await three_bindings(fed)
    mother = people["mother"]
    response = await http[DESTINATION].post(f"/v1/admin/persons/{mother.id_no}:end-insurance",
                                            headers=keyed(OPERATOR))
    assert response.status_code == 200, response.text
    assert response.json() == {"psn_no": mother.psn_no, "id_no_masked": mother.id_no[:4] + "*" * 10 + mother.id_no[-4:],
                               "insutype": "390", "insured": False, "pooling_admdvs": "620100",
                               "binding_end_reason": "INSURANCE_ENDED"}
    [status_msg] = await fed.take_outbox(fed.node(DESTINATION).db)
    assert (status_msg.topic, status_msg.key) == (topics.HUB_INBOUND, mother.psn_no)
    assert consumer_accepts(status_msg) == PersonStatusChanged(
        psn_no=mother.psn_no, insuplc_admdvs=DESTINATION, insured=False, pooling_admdvs="620100",
        previous_pooling_admdvs="620100", binding_end_reason="INSURANCE_ENDED", changed_at=fed.clock.now())
    await fed.deliver([status_msg])
    await fed.pump()

    for link, admdvs_pair in (("daughter-mother", (SOURCE, DESTINATION)), ("son-mother", (SOURCE, DESTINATION))):
        for admdvs in admdvs_pair:
            row = await replica(fed, admdvs, links[link])
            assert (row.state, row.ended_reason) == ("ENDED", "INSURANCE_ENDED"), (link, admdvs)
    assert (await replica(fed, SOURCE, links["daughter-husband"])).state == "ACTIVE"
    async with UnitOfWork(fed.hub.db) as uow:
        insured = (await uow.execute(sa.select(DIRECTORY.c.insured).where(
            DIRECTORY.c.psn_no == mother.psn_no))).scalar_one()
    assert insured is False
    assert (await notices_of(fed, mother))[-1] == "您与亲属的医保钱包共济绑定已解除（参保关系终止）"
    assert (await notices_of(fed, people["son"]))[-1] == "您与李*英的共济绑定已解除（参保关系终止）"

    # A transfer on an ended binding is refused with nothing changed; the other binding still works.
    before = await balance_fen(fed, SOURCE, ledger.personal_account(people["daughter"].psn_no))
    source = fed.node(SOURCE)
    async with UnitOfWork(source.db) as uow:
        assert await refused(node_transfers.send_transfer(source, uow, people["daughter"].claims(fed.clock.now()),
                                                          links["daughter-mother"], 100)) == "BINDING_NOT_ACTIVE"
    assert await balance_fen(fed, SOURCE, ledger.personal_account(people["daughter"].psn_no)) == before
    await send_transfer(fed, people["daughter"], links["daughter-husband"], 100)
    await fed.pump()
    # Ending it again is a no-op that tells nobody anything.
    again = await http[DESTINATION].post(f"/v1/admin/persons/{mother.id_no}:end-insurance", headers=keyed(OPERATOR))
    assert again.status_code == 200 and again.json()["binding_end_reason"] is None
    assert await outbox_is_empty(fed)
    await assert_money_conserved(fed, 2 * GIVER_PA_FEN)


async def test_a_giver_whose_insurance_ended_cannot_send_even_before_the_hub_answers(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    ended = await http[SOURCE].post(f"/v1/admin/persons/{giver.id_no}:end-insurance", headers=keyed(OPERATOR))
    assert ended.status_code == 200
    assert (await replica(fed, SOURCE, binding_id)).state == "ACTIVE"  # the hub has not answered yet
    response = await http[SOURCE].post("/v1/transfers", json={"binding_id": binding_id, "amount_fen": 100},
                                       headers=keyed(bearer(fed, giver)))
    assert (response.status_code, response.json()["error"]["code"]) == (422, "BINDING_NOT_ACTIVE")
    # They can still log in and see their own records (person_status.py), but not open a new binding.
    assert (await http[SOURCE].get("/v1/me", headers=bearer(fed, giver))).status_code == 200
    bind = await http[SOURCE].post("/v1/bindings", json={"relative_id_no": mother.id_no, "relative_name": "李秀英",
                                                          "relation": "parent"}, headers=keyed(bearer(fed, giver)))
    assert (bind.status_code, bind.json()["error"]["code"]) == (422, "GIVER_NOT_EMPLOYEE")
    await fed.pump()
    assert (await replica(fed, DESTINATION, binding_id)).ended_reason == "INSURANCE_ENDED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_change_pooling_within_the_pool_keeps_bindings_and_across_pools_ends_them(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother = await family(fed)  # the mother's pooling region is 620100 (兰州)
    binding_id = await active_binding(fed, giver, mother)

    async def move(pooling: str) -> httpx.Response:
        return await http[DESTINATION].post(f"/v1/admin/persons/{mother.id_no}:change-pooling",
                                            json={"pooling_admdvs": pooling}, headers=keyed(OPERATOR))

    within = await move("620102")  # 城关区, a district of 兰州
    assert within.status_code == 200 and within.json()["binding_end_reason"] is None
    await fed.pump()
    assert (await replica(fed, SOURCE, binding_id)).state == "ACTIVE"
    assert (await replica(fed, DESTINATION, binding_id)).state == "ACTIVE"

    across = await move("620200")  # 嘉峪关, another pool
    assert across.status_code == 200 and across.json()["binding_end_reason"] == "MOVED_REGION"
    await fed.pump()
    for admdvs in (SOURCE, DESTINATION):
        row = await replica(fed, admdvs, binding_id)
        assert (row.state, row.ended_reason) == ("ENDED", "MOVED_REGION")
    async with UnitOfWork(fed.hub.db) as uow:
        hub_row = (await uow.execute(sa.select(HUB_BINDINGS).where(HUB_BINDINGS.c.binding_id == binding_id))).one()
    assert (hub_row.state, hub_row.ended_reason) == ("ENDED", "MOVED_REGION")
    # After a move a person can be bound again, from the new region.
    assert (await move("620200")).json()["binding_end_reason"] is None


async def test_person_status_refusals_change_nothing(fed: InProcessFederation,
                                                      http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother = await family(fed)
    client = http[DESTINATION]
    valid = make_id_no("62010219580701009")
    bad_id = valid[:-1] + ("0" if valid[-1] != "0" else "1")  # the check digit does not match
    cases = [
        (f"/v1/admin/persons/{bad_id}:end-insurance", None, 422, "INVALID_ID_NO"),
        (f"/v1/admin/persons/{bad_id}:change-pooling", {"pooling_admdvs": "620200"}, 422, "INVALID_ID_NO"),
        (f"/v1/admin/persons/{valid}:end-insurance", None, 404, "PERSON_NOT_FOUND"),  # never imported
        (f"/v1/admin/persons/{giver.id_no}:end-insurance", None, 404, "PERSON_NOT_FOUND"),  # insured in 640000
        (f"/v1/admin/persons/{mother.id_no}:change-pooling", {"pooling_admdvs": "640100"}, 422,
         "INVALID_POOLING_ADMDVS"),
        (f"/v1/admin/persons/{mother.id_no}:change-pooling", {"pooling_admdvs": "6201"}, 422,
         "INVALID_POOLING_ADMDVS"),
        (f"/v1/admin/persons/{mother.id_no}:change-pooling", {}, 422, "VALIDATION_ERROR"),
    ]
    for path, body, status, code in cases:
        response = await client.post(path, json=body, headers=keyed(OPERATOR))
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), (path, response.text)
    unauthenticated = await client.post(f"/v1/admin/persons/{mother.id_no}:end-insurance")
    assert unauthenticated.status_code == 401
    assert await outbox_is_empty(fed)
    async with UnitOfWork(fed.node(DESTINATION).db) as uow:
        row = (await uow.execute(sa.select(node_persons.PERSONS).where(
            node_persons.PERSONS.c.psn_no == mother.psn_no))).one()
    assert (row.insured, row.pooling_admdvs) == (True, "620100")


async def test_admin_calls_replay_under_their_idempotency_key(fed: InProcessFederation,
                                                               http: dict[str, httpx.AsyncClient]) -> None:
    _, mother = await family(fed)
    headers = keyed(OPERATOR)
    path = f"/v1/admin/persons/{mother.id_no}:change-pooling"
    first = await http[DESTINATION].post(path, json={"pooling_admdvs": "620200"}, headers=headers)
    again = await http[DESTINATION].post(path, json={"pooling_admdvs": "620200"}, headers=headers)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert first.json()["binding_end_reason"] == "MOVED_REGION"
    other = await http[DESTINATION].post(path, json={"pooling_admdvs": "620300"}, headers=headers)
    assert (other.status_code, other.json()["error"]["code"]) == (409, "IDEMPOTENCY_KEY_REUSED")
    assert [m.type for m in await fed.take_all()] == [PersonStatusChanged.TYPE]  # one change, one event


async def test_a_503_is_not_remembered_so_the_retry_under_its_key_imports(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub's directory did not answer in time: the node says 503 HUB_UNAVAILABLE and keeps nothing, and the
    client's retry under the same Idempotency-Key runs the import instead of replaying the 503."""
    ctx = fed.node(SOURCE)
    register = ctx.hub.register_persons
    calls: list[int] = []

    async def slow_hub_once(batch: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ApiError(503, "HUB_UNAVAILABLE", "hub did not answer: ReadTimeout")
        return await register(batch)

    monkeypatch.setattr(ctx.hub, "register_persons", slow_hub_once)
    id_no = make_id_no("64010219900203007")
    body = {"persons": [{"id_no": id_no, "name": "马丽", "phone": "13900139001", "insutype": "390",
                         "pooling_admdvs": "640100"}]}
    headers = keyed(OPERATOR)
    first = await http[SOURCE].post("/v1/admin/persons:import", json=body, headers=headers)
    assert (first.status_code, first.json()["error"]["code"]) == (503, "HUB_UNAVAILABLE")
    again = await http[SOURCE].post("/v1/admin/persons:import", json=body, headers=headers)
    assert (again.status_code, again.json()) == (200, {"imported": 1, "rejected": []})
    replay = await http[SOURCE].post("/v1/admin/persons:import", json=body, headers=headers)
    assert replay.json() == again.json() and len(calls) == 2


async def test_reimport_neither_moves_the_person_nor_reinstates_the_insurance(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, _ = await family(fed)
    assert (await http[SOURCE].post(f"/v1/admin/persons/{giver.id_no}:end-insurance",
                                    headers=keyed(OPERATOR))).status_code == 200
    body = {"persons": [{"id_no": giver.id_no, "name": giver.name, "phone": "13900139000", "insutype": "310",
                         "pooling_admdvs": "640200"}]}
    reimported = await http[SOURCE].post("/v1/admin/persons:import", json=body, headers=keyed(OPERATOR))
    assert reimported.json() == {"imported": 1, "rejected": []}
    async with UnitOfWork(fed.node(SOURCE).db) as uow:
        row = (await uow.execute(sa.select(node_persons.PERSONS).where(
            node_persons.PERSONS.c.psn_no == giver.psn_no))).one()
    assert (row.insured, row.pooling_admdvs, row.phone) == (False, "640100", "13900139000")
    async with UnitOfWork(fed.hub.db) as uow:
        assert (await uow.execute(sa.select(DIRECTORY.c.insured).where(
            DIRECTORY.c.psn_no == giver.psn_no))).scalar_one() is False


# ------------------------------------------------------------------------------------------ transfer rules


async def test_a_transfer_at_2300_is_refused_by_the_use_case_with_nothing_changed(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    fed.clock.at = datetime(2025, 1, 15, 23, 0, tzinfo=SHANGHAI).astimezone(UTC)
    ctx = fed.node(SOURCE)
    async with UnitOfWork(ctx.db) as uow:
        code = await refused(node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id,
                                                          AMOUNT_FEN))
    assert code == "TRANSFER_QUIET_HOURS"
    assert await balance_fen(fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN
    assert await outbox_is_empty(fed)
    fed.clock.at = datetime(2025, 1, 16, 6, 0, tzinfo=SHANGHAI).astimezone(UTC)  # 06:00: allowed again
    await send_transfer(fed, giver, binding_id, AMOUNT_FEN)


async def test_the_province_override_is_what_the_use_case_applies(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    ctx = fed.node(SOURCE)
    ctx.settings = ctx.settings.model_copy(update={"transfer_overrides": {
        SOURCE: TransferOverride(max_per_day=1, max_fen=1_000), DESTINATION: TransferOverride(max_fen=5)}})
    ctx.policy = ctx.settings.transfer_policy()  # what bootstrap builds from the settings
    await send_transfer(fed, giver, binding_id, 1_000)
    for amount_fen, code in ((1_001, "TRANSFER_LIMIT_AMOUNT"), (1_000, "TRANSFER_LIMIT_DAILY")):
        async with UnitOfWork(ctx.db) as uow:
            assert await refused(node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id,
                                                              amount_fen)) == code


# ------------------------------------------------------------------------------------------ acceptance


async def held_transfer(fed: InProcessFederation) -> tuple[Person, Person, str, str]:
    """A transfer into a province whose receivers must accept, delivered and held there."""
    require_acceptance(fed)
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    moved = await fed.pump()
    assert [m.type for m in moved] == [TransferRequested.TYPE, TransferCredit.TYPE, TransferAwaitingAcceptance.TYPE]
    held = consumer_accepts(moved[-1])
    assert held == TransferAwaitingAcceptance(transfer_id=transfer_id, accept_by=NEXT_0600)
    return giver, mother, binding_id, transfer_id


async def accept(fed: InProcessFederation, http: dict[str, httpx.AsyncClient], person: Person,
                 transfer_id: str) -> httpx.Response:
    return await http[person.admdvs].post(f"/v1/transfers/{transfer_id}:accept", headers=keyed(bearer(fed, person)))


async def test_a_held_transfer_is_credited_when_the_receiver_accepts(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother, _, transfer_id = await held_transfer(fed)
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    assert without_sms_codes(await notices_of(fed, mother)) == [
        "您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认，或回复“确认 ######”即可完成绑定",
                                             "您的亲属向您转账500元，请于1月16日06:00前在医保钱包确认接收，逾期将退回"]
    seen = await http[DESTINATION].get(f"/v1/transfers/{transfer_id}", headers=bearer(fed, mother))
    assert seen.json()["state"] == "AWAITING_ACCEPTANCE" and seen.json()["accept_by"] == "2025-01-15T22:00:00Z"
    # The hub waits for the receiver instead of cancelling at its normal timeout.
    hub_row = await hub_transfer(fed, transfer_id)
    assert hub_row.state == "ROUTED"
    assert hub_row.deadline_at == NEXT_0600 + timedelta(seconds=fed.hub.settings.acceptance_margin_s)
    fed.clock.advance(TRANSFER_TIMEOUT_S * 10)
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 0

    # Only the receiver can accept it; the giver at the other node does not even see it there.
    assert (await accept(fed, http, giver, transfer_id)).status_code == 404
    accepted = await accept(fed, http, mother, transfer_id)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["state"] == "CREDITED" and "credited_at" in accepted.json()
    moved = await fed.pump()
    result = consumer_accepts(next(m for m in moved if m.type == TransferCreditResult.TYPE))
    assert result.model_dump(include={"outcome"}) == {"outcome": "CREDITED"}
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    assert (await notices_of(fed, mother))[-1] == "您的共济账户已收到500元"
    twice = await accept(fed, http, mother, transfer_id)
    assert twice.status_code == 200 and twice.json()["state"] == "CREDITED"
    assert await outbox_is_empty(fed)
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_an_unaccepted_transfer_returns_to_the_giver_at_0600(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother, _, transfer_id = await held_transfer(fed)
    ctx = fed.node(DESTINATION)
    fed.clock.at = NEXT_0600.astimezone(UTC) - timedelta(seconds=1)
    async with UnitOfWork(ctx.db) as uow:
        assert await node_transfers.reject_unaccepted(ctx, uow) == 0
    fed.clock.at = NEXT_0600.astimezone(UTC)
    # At 06:00 and before the scan has run, accepting is already refused, with nothing changed.
    late = await accept(fed, http, mother, transfer_id)
    assert (late.status_code, late.json()["error"]["code"]) == (422, "ACCEPTANCE_EXPIRED")
    assert await outbox_is_empty(fed)

    await node_transfers.expire_unaccepted(ctx)
    assert (await transfer_in(fed, transfer_id)).state == "REJECTED"
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await out_reason(fed, giver, transfer_id) == "NOT_ACCEPTED"
    assert (await notices_of(fed, giver))[-1] == "您的共济转账500元已退回个人账户（对方未确认接收）"
    after = await accept(fed, http, mother, transfer_id)
    assert (after.status_code, after.json()["error"]["code"]) == (422, "TRANSFER_NOT_AWAITING_ACCEPTANCE")
    await node_transfers.expire_unaccepted(ctx)  # a second scan finds nothing
    assert await outbox_is_empty(fed)
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_a_cancel_while_held_is_honoured_and_a_later_accept_refused(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient]) -> None:
    giver, mother, binding_id, transfer_id = await held_transfer(fed)
    await end_binding(fed, giver, binding_id)
    await fed.pump()
    assert (await transfer_in(fed, transfer_id)).state == "CANCELLED"
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await out_reason(fed, giver, transfer_id) == "BINDING_ENDED"
    refusal = await accept(fed, http, mother, transfer_id)
    assert (refusal.status_code, refusal.json()["error"]["code"]) == (422, "TRANSFER_NOT_AWAITING_ACCEPTANCE")
    ctx = fed.node(DESTINATION)
    fed.clock.at = NEXT_0600.astimezone(UTC)
    async with UnitOfWork(ctx.db) as uow:
        assert await node_transfers.reject_unaccepted(ctx, uow) == 0  # decided already
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_an_accept_before_the_cancel_arrives_wins(fed: InProcessFederation,
                                                        http: dict[str, httpx.AsyncClient]) -> None:
    """The receiver accepts while the hub's cancel (binding ended) is still on its way: credited, once."""
    giver, mother, binding_id, transfer_id = await held_transfer(fed)
    await end_binding(fed, giver, binding_id)
    hub_out = await fed.take_outbox(fed.hub.db)  # BindingChanged to both nodes, and the cancel: all held back
    assert (await accept(fed, http, mother, transfer_id)).status_code == 200
    await fed.deliver(hub_out)
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_an_accept_after_the_end_is_known_is_refused(fed: InProcessFederation,
                                                           http: dict[str, httpx.AsyncClient]) -> None:
    """The destination has the BindingChanged but not yet the cancel: the accept is refused, the cancel
    then decides."""
    giver, mother, binding_id, transfer_id = await held_transfer(fed)
    await end_binding(fed, giver, binding_id)
    hub_out = await fed.take_outbox(fed.hub.db)
    await fed.deliver([m for m in hub_out if m.type == BindingChanged.TYPE])
    refusal = await accept(fed, http, mother, transfer_id)
    assert (refusal.status_code, refusal.json()["error"]["code"]) == (422, "BINDING_NOT_ACTIVE")
    await fed.deliver([m for m in hub_out if m.type == TransferCancel.TYPE])
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_a_silent_destination_is_cancelled_after_accept_by_and_the_margin(fed: InProcessFederation) -> None:
    giver, _, _, transfer_id = await held_transfer(fed)
    deadline = NEXT_0600.astimezone(UTC) + timedelta(seconds=fed.hub.settings.acceptance_margin_s)
    fed.clock.at = deadline
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 0
    fed.clock.advance(1)  # the destination never rejected it (down all night): the hub asks for the cancel
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 1
        await uow.commit()
    await fed.pump()
    assert (await transfer_in(fed, transfer_id)).state == "CANCELLED"
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    await node_transfers.expire_unaccepted(fed.node(DESTINATION))
    assert await outbox_is_empty(fed)
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_an_awaiting_notice_after_the_timeout_leaves_the_cancel_in_charge(fed: InProcessFederation) -> None:
    """The hub's normal timeout fired before the destination's AwaitingAcceptance reached it: the deadline is
    not extended and the cancel it already sent decides."""
    require_acceptance(fed)
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await open_wallet(fed, mother)
    transfer_id, credit = await routed_but_not_delivered(fed, giver, binding_id)
    await fed.deliver([credit])
    [awaiting] = await fed.take_outbox(fed.node(DESTINATION).db)
    fed.clock.advance(TRANSFER_TIMEOUT_S + 1)
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 1
        await uow.commit()
    before = (await hub_transfer(fed, transfer_id)).deadline_at
    await fed.deliver([awaiting])
    assert (await hub_transfer(fed, transfer_id)).deadline_at == before
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await out_reason(fed, giver, transfer_id) == "TIMEOUT"
    await assert_money_conserved(fed, GIVER_PA_FEN)


# ------------------------------------------------------------------------------------------ no lock held


class StallingTransport(httpx.AsyncBaseTransport):
    """The hub answering slowly: each request waits until the test lets it through."""

    def __init__(self, inner: RecordingTransport) -> None:
        self.inner = inner
        self.arrived = asyncio.Event()
        self.go = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        await self.go.wait()
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("call", ["create", "confirm", "end", "import"])
async def test_the_node_holds_no_write_lock_while_the_hub_answers(
        fed: InProcessFederation, http: dict[str, httpx.AsyncClient], call: str) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother) if call in ("end",) else None
    if call == "confirm":
        requested = await node_bindings.request_binding(fed.node(SOURCE), giver.claims(fed.clock.now()),
                                                        node_bindings.BindingRequest(
                                                            relative_id_no=mother.id_no, relative_name="李秀英",
                                                            relation="parent"), None)
        binding_id = requested.binding_id
    caller = {"create": giver, "confirm": mother, "end": giver, "import": giver}[call]
    ctx = fed.node(caller.admdvs)
    stalling = StallingTransport(fed.transport)
    fast_hub, ctx.hub = ctx.hub, wired_hub_client(ctx.settings, stalling)
    await fast_hub.close()
    requests = {
        "create": ("POST", "/v1/bindings", {"relative_id_no": mother.id_no, "relative_name": "李秀英",
                                             "relation": "parent"}, bearer(fed, giver)),
        "confirm": ("POST", f"/v1/bindings/{binding_id}:confirm", None, bearer(fed, mother)),
        "end": ("DELETE", f"/v1/bindings/{binding_id}", None, bearer(fed, giver)),
        "import": ("POST", "/v1/admin/persons:import", {"persons": [{
            "id_no": giver.id_no, "name": giver.name, "phone": "13800138000", "insutype": "310",
            "pooling_admdvs": "640100"}]}, OPERATOR),
    }
    method, path, body, headers = requests[call]
    pending = asyncio.create_task(http[caller.admdvs].request(method, path, json=body, headers=keyed(headers)))
    await asyncio.wait_for(stalling.arrived.wait(), timeout=5)
    # While the hub call is outstanding, another use case of this node (a transfer, say) can write.
    assert not ctx.db.write_lock.locked()
    async with asyncio.timeout(1):
        async with UnitOfWork(ctx.db) as uow:
            await uow.execute(sa.select(1))
    stalling.go.set()
    response = await pending
    assert response.status_code in (200, 201), response.text


# ------------------------------------------------------------------------------------------ ledger summary


async def test_ledger_summary_answers_its_schema_and_golden_sample(fed: InProcessFederation,
                                                                    http: dict[str, httpx.AsyncClient]) -> None:
    await family(fed)
    sample = load_sample("node.ledger.summary.response.json")
    assert LedgerSummary.model_validate(sample).model_dump(mode="json") == sample
    token = {"authorization": f"Bearer {fed.node(SOURCE).settings.internal_token}"}
    response = await http[SOURCE].get("/internal/v1/ledger/summary", headers=token)
    assert response.status_code == 200
    summary = LedgerSummary.model_validate(response.json())
    assert summary.model_dump(mode="json") == response.json()
    assert key_tree(response.json()) == key_tree(sample) | {"totals_fen": key_tree(response.json()["totals_fen"])}
    assert (summary.admdvs, summary.sum_fen, summary.journal_balanced) == (SOURCE, 0, True)
    assert summary.totals_fen["PA"] == GIVER_PA_FEN
    schema = node_app(fed, SOURCE).openapi()["paths"]["/internal/v1/ledger/summary"]["get"]["responses"]["200"]
    assert schema["content"]["application/json"]["schema"]["$ref"].endswith("/LedgerSummary")
    assert (SAMPLES / "node.ledger.summary.response.json").is_file()
    assert (await http[SOURCE].get("/internal/v1/ledger/summary")).status_code == 401
