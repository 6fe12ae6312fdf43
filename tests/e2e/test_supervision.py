"""Supervision on the real federation (issue 12): each risk rule fires exactly when its threshold is passed and not
before; a held transfer released ends credited once, rejected ends refunded once, also with a service killed
between the steps; statistics count in-province use; the audit chain verifies after real traffic and names the
first bad entry after an edit of a journal entry, a posting or a balance in a stopped node's database.

Rules are shared by the whole federation: each test that changes one puts the defaults back when it ends."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from launcher import supervisor
from launcher.client import FederationClient
from launcher.people import new_person
from launcher.pos_client import DEMO_CATALOGUE, Item, Payer, PosClient, ok
from services.national_hub.domain import risk_rules
from shared.clock import SHANGHAI
from shared.db import Database, ReadView, UnitOfWork, open_database
from shared.settings import ServiceSettings
from tests.conftest import Federation
from tests.e2e.flows import (
    Pair,
    bind,
    bound_pair,
    enrol,
    eventually,
    face_login,
    me,
    money_totals,
    notices,
    send,
    wait_transfer,
)

pytestmark = pytest.mark.federation

DRUG = "XC08CAA001A001"


def operator(federation: Federation, key: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {federation.operator_token}", "idempotency-key": key or uuid.uuid4().hex}


async def ops(client: FederationClient, federation: Federation, method: str, path: str, body: Any = None,
              key: str | None = None) -> httpx.Response:
    return await client.http.request(method, f"{client.hub_url()}/v1/ops{path}", json=body,
                                     headers=operator(federation, key))


async def ops_json(client: FederationClient, federation: Federation, path: str) -> Any:
    response = await ops(client, federation, "GET", path)
    assert response.status_code == 200, response.text
    return response.json()


@contextlib.asynccontextmanager
async def rule(client: FederationClient, federation: Federation, rule_id: str,
               change: dict[str, Any]) -> AsyncIterator[None]:
    """A rule changed for the duration of a test, its defaults back afterwards."""
    changed = await ops(client, federation, "PUT", f"/risk-rules/{rule_id}", change)
    assert changed.status_code == 200, changed.text
    try:
        yield
    finally:
        default = risk_rules.default_setting(rule_id)
        back = await ops(client, federation, "PUT", f"/risk-rules/{rule_id}",
                         {"enabled": True, "action": default.action, "params": dict(default.params)})
        assert back.status_code == 200, back.text


async def alerts_about(client: FederationClient, federation: Federation, rule_id: str,
                       match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    listed = await ops_json(client, federation, f"/alerts?rule_id={rule_id}")
    return [alert for alert in listed if match(alert)]


def about_person(psn_no: str) -> Callable[[dict[str, Any]], bool]:
    return lambda alert: alert["subject"].get("psn_no") == psn_no


async def settled_transfer(client: FederationClient, pair: Pair, amount_fen: int) -> str:
    accepted = await send(client, pair, amount_fen)
    done = await wait_transfer(client, pair.giver_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED", done
    transfer_id: str = accepted["transfer_id"]
    return transfer_id


# ------------------------------------------------------------------------------------ transfer rules


async def test_high_frequency_fires_on_the_transfer_past_max_count(federation: Federation,
                                                                   client: FederationClient) -> None:
    async with rule(client, federation, "HIGH_FREQUENCY_TRANSFERS", {"params": {"max_count": 2}}):
        pair = await bound_pair(client, "640100", "620100")
        for _ in range(2):
            await settled_transfer(client, pair, 1_000)
        assert await alerts_about(client, federation, "HIGH_FREQUENCY_TRANSFERS",
                                  about_person(pair.giver_session.psn_no)) == []
        third = await settled_transfer(client, pair, 1_000)
        [alert] = await alerts_about(client, federation, "HIGH_FREQUENCY_TRANSFERS",
                                     about_person(pair.giver_session.psn_no))
        assert alert["detail"]["transfer_id"] == third and alert["detail"]["from_giver_in_window"] == 3
        assert alert["state"] == "open" and "held_transfer_id" not in alert


async def test_new_binding_large_transfer_fires_at_min_amount(federation: Federation,
                                                              client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "610100")
    await settled_transfer(client, pair, 149_999)
    assert await alerts_about(client, federation, "NEW_BINDING_LARGE_TRANSFER",
                              about_person(pair.giver_session.psn_no)) == []
    at_threshold = await settled_transfer(client, pair, 150_000)
    [alert] = await alerts_about(client, federation, "NEW_BINDING_LARGE_TRANSFER",
                                 about_person(pair.giver_session.psn_no))
    assert alert["detail"]["transfer_id"] == at_threshold and alert["subject"]["binding_id"] == pair.binding_id


async def test_many_givers_one_relative_fires_past_max_givers(federation: Federation,
                                                              client: FederationClient) -> None:
    async with rule(client, federation, "MANY_GIVERS_ONE_RELATIVE", {"params": {"max_givers": 2}}):
        relative = new_person("620100")
        givers = [new_person("640100", personal_account_fen=10_000) for _ in range(3)]
        await enrol(client, relative, *givers)
        relative_session = await face_login(client, relative)
        for number, giver in enumerate(givers, start=1):
            await bind(client, giver, await face_login(client, giver), relative, relative_session)
            found = await alerts_about(client, federation, "MANY_GIVERS_ONE_RELATIVE",
                                       about_person(relative_session.psn_no))
            if number <= 2:
                assert found == [], f"fired at {number} givers"
        assert len(found) == 1 and found[0]["detail"]["active_givers"] == 3


# ---------------------------------------------------------------------------------- settlement rules


async def _till(client: FederationClient, name: str, admdvs: str) -> PosClient:
    registration = await client.register_institution(f"P{admdvs[:4]}{random.randrange(10**7):07d}", name, admdvs)
    till = PosClient.registered(client.gateway_url(), registration)
    await till.sign_in()
    return till


@contextlib.asynccontextmanager
async def tills(client: FederationClient, *admdvs: str) -> AsyncIterator[list[PosClient]]:
    await client.import_catalogue(DEMO_CATALOGUE)
    made = [await _till(client, f"监管测试药房{n}", code) for n, code in enumerate(admdvs)]
    try:
        yield made
    finally:
        for till in made:
            await till.aclose()


async def pays(till: PosClient, payer: Payer, yuan: str) -> dict[str, Any]:
    info: dict[str, Any] = ok(await till.settle(payer, [Item(DRUG, 1, yuan)]))["setlinfo"]
    return info


async def settlement_alerts(client: FederationClient, federation: Federation, rule_id: str,
                            match: Callable[[dict[str, Any]], bool], expected: int) -> list[dict[str, Any]]:
    """Settlements reach the hub through the gateway's outbox after the till's answer: wait for `expected`,
    then make sure no more come."""
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        nonlocal found
        found = await alerts_about(client, federation, rule_id, match)
        return len(found) >= expected

    if expected:
        await eventually(arrived, f"{expected} {rule_id} alert(s)")
    else:
        await _settled_at_hub(client, federation)
        found = await alerts_about(client, federation, rule_id, match)
    return found


async def _settled_at_hub(client: FederationClient, federation: Federation) -> None:
    """Long enough for the gateway's reports to be at the hub (linger 50 ms, relay, one hub batch)."""
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        await ops_json(client, federation, "/alerts?state=open&rule_id=NONE")
        await asyncio.sleep(0.1)


async def test_settlement_rules_fire_exactly_at_their_thresholds(federation: Federation,
                                                                 client: FederationClient) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(rule(client, federation, "LARGE_REMOTE_PAYMENT",
                                             {"params": {"min_amount_fen": 5_000}}))
        await stack.enter_async_context(rule(client, federation, "SPLIT_PURCHASES", {"params": {"max_count": 2}}))
        chengdu, yinchuan, xian = await stack.enter_async_context(tills(client, "510100", "640100", "610100"))
        # LARGE_REMOTE_PAYMENT: 49.99 yuan from accounts in Chengdu for a Ningxia payer: no; 50.00: yes; 80.00 in
        # Yinchuan (home province): no.
        remote = new_person("640100", personal_account_fen=100_000)
        await enrol(client, remote)
        payer = await chengdu.payer("02", remote.id_no)
        home_payer = await yinchuan.payer("02", remote.id_no)
        await pays(yinchuan, home_payer, "80.00")
        await pays(chengdu, payer, "49.99")
        psn = payer.psn_no
        assert await settlement_alerts(client, federation, "LARGE_REMOTE_PAYMENT", about_person(psn), 0) == []
        large = await pays(chengdu, payer, "50.00")
        [alert] = await settlement_alerts(client, federation, "LARGE_REMOTE_PAYMENT", about_person(psn), 1)
        assert alert["detail"]["setl_id"] == large["setl_id"] and alert["detail"]["accounts_fen"] == 5_000
        # DISTANT_PAYMENTS: Yinchuan then Chengdu within the hour: the Chengdu settlements are flagged.
        distant = await settlement_alerts(client, federation, "DISTANT_PAYMENTS", about_person(psn), 2)
        assert {a["detail"]["provinces"] == ["510000", "640000"] for a in distant} == {True}

        # SPLIT_PURCHASES (max 2 per institution per hour): the third at one till fires, not the second.
        splitter = new_person("610100", personal_account_fen=100_000)
        await enrol(client, splitter)
        split_payer = await xian.payer("02", splitter.id_no)
        for _ in range(2):
            await pays(xian, split_payer, "3.00")
        assert await settlement_alerts(client, federation, "SPLIT_PURCHASES",
                                       about_person(split_payer.psn_no), 0) == []
        third = await pays(xian, split_payer, "3.00")
        [split] = await settlement_alerts(client, federation, "SPLIT_PURCHASES", about_person(split_payer.psn_no), 1)
        assert split["detail"]["setl_id"] == third["setl_id"] and split["detail"]["settlements_in_window"] == 3
        # ... and one payer in one province is never a distant payment.
        assert await settlement_alerts(client, federation, "DISTANT_PAYMENTS",
                                       about_person(split_payer.psn_no), 0) == []


async def test_institution_cluster_fires_at_min_persons(federation: Federation, client: FederationClient) -> None:
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(rule(client, federation, "INSTITUTION_CLUSTER",
                                             {"params": {"min_persons": 3}}))
        [till] = await stack.enter_async_context(tills(client, "640100"))
        code = till.fixmedins_code

        def about_till(alert: dict[str, Any]) -> bool:
            return bool(alert["subject"].get("fixmedins_code") == code)

        for number in range(1, 4):
            pair = await bound_pair(client, "640100", "640100", relation="parent")
            await settled_transfer(client, pair, 2_000)  # wallet money: what the rule watches
            payer = await till.payer("02", pair.relative.id_no)
            paid = await pays(till, payer, "10.00")
            assert paid["acct_mulaid_pay"] == 10.0
            expected = 1 if number == 3 else 0
            found = await settlement_alerts(client, federation, "INSTITUTION_CLUSTER", about_till, expected)
            assert len(found) == expected, f"{len(found)} alerts after {number} payers"
        assert found[0]["detail"]["distinct_payers_in_window"] == 3


# ------------------------------------------------------------------------------------------- holds


async def held(client: FederationClient, federation: Federation, amount_fen: int) -> tuple[Pair, str, str]:
    """A transfer a hold rule caught, seen HELD by the giver; its alert."""
    pair = await bound_pair(client, "640100", "620100")
    accepted = await send(client, pair, amount_fen)
    transfer_id = accepted["transfer_id"]
    view = await wait_transfer(client, pair.giver_session, transfer_id, states=("HELD",))
    assert view["reason"] == "RISK_REVIEW"
    [alert] = await alerts_about(client, federation, "NEW_BINDING_LARGE_TRANSFER",
                                 lambda a: a.get("held_transfer_id") == transfer_id)
    return pair, transfer_id, alert["alert_id"]


@pytest.mark.parametrize(("decision", "victim", "when"), [
    ("release", "hub", "before"), ("release", "node-620000", "after"),
    ("reject", "node-640000", "after"), ("reject", "hub", "after")])
async def test_hold_then_decision_ends_credited_or_refunded_once_despite_a_kill(
        federation: Federation, client: FederationClient, decision: str, victim: str, when: str) -> None:
    amount_fen = 120_000
    async with rule(client, federation, "NEW_BINDING_LARGE_TRANSFER",
                    {"action": "hold", "params": {"min_amount_fen": amount_fen}}):
        pair, transfer_id, alert_id = await held(client, federation, amount_fen)
        before = await money_totals(client, federation)  # the people above are funded: count from here
        giver_pa = (await me(client, pair.giver_session))["personal_account_fen"]
        # Held: the hub's timeout (15 s here) does not touch it.
        await asyncio.sleep(1.0)
        body = {"decision": decision, "reviewer": "张审核", "note": "e2e"}
        key = uuid.uuid4().hex
        if when == "before":
            supervisor.signal_service(federation.home, victim, signal.SIGKILL)
            supervisor.restart_service(federation.home, victim)
            answer = await ops(client, federation, "POST", f"/alerts/{alert_id}:resolve", body, key)
        else:
            stopped = victim != "hub"
            if stopped:
                supervisor.signal_service(federation.home, victim, signal.SIGTERM)
            answer = await ops(client, federation, "POST", f"/alerts/{alert_id}:resolve", body, key)
            if not stopped:
                supervisor.signal_service(federation.home, victim, signal.SIGKILL)
            supervisor.restart_service(federation.home, victim)
        assert answer.status_code == 200, answer.text
        again = await ops(client, federation, "POST", f"/alerts/{alert_id}:resolve", body, key)
        assert (again.status_code, again.json()) == (200, answer.json())
        other = await ops(client, federation, "POST", f"/alerts/{alert_id}:resolve", body)
        assert (other.status_code, other.json()["error"]["code"]) == (409, "ALERT_ALREADY_RESOLVED")
        done = await wait_transfer(client, pair.giver_session, transfer_id, timeout_s=60)
        wallet = (await me(client, pair.relative_session))["wallet"]["balance_fen"]
        if decision == "release":
            assert done["state"] == "CREDITED" and wallet == amount_fen
            assert (await me(client, pair.giver_session))["personal_account_fen"] == giver_pa
        else:
            assert (done["state"], done["reason"]) == ("REFUNDED", "RISK_REJECTED") and wallet == 0
            assert (await me(client, pair.giver_session))["personal_account_fen"] == giver_pa + amount_fen

            async def both_told() -> bool:
                giver_notes = await notices(client, pair.giver_session)
                relative_notes = await notices(client, pair.relative_session)
                return any("审核未通过" in t for t in giver_notes) and any("审核未通过" in t for t in relative_notes)

            await eventually(both_told, "giver and relative told of the rejection")
        after = await money_totals(client, federation)
        assert after["held_fen"] == before["held_fen"] and after["in_flight_fen"] == 0
        log = await ops_json(client, federation, "/access-log")
        assert any(e["action"] == f"alert.{decision}" and e.get("reviewer") == "张审核" for e in log)


# -------------------------------------------------------------------------------- statistics, activity


async def test_statistics_count_in_province_use_and_match_the_ledgers(federation: Federation,
                                                                      client: FederationClient) -> None:
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    before = await ops_json(client, federation, f"/stats?from={month}&to={month}")
    summary_before = await _wallet_and_quota_totals(client, federation)
    same_pool = await bound_pair(client, "640100", "640100")
    in_province = await bound_pair(client, "640100", "640200")
    cross = await bound_pair(client, "640100", "620100")
    for pair, amount in ((same_pool, 3_000), (in_province, 4_000), (cross, 5_000)):
        await settled_transfer(client, pair, amount)
    async with tills(client, "640100") as (till,):
        payer = await till.payer("02", same_pool.relative.id_no)
        paid = await pays(till, payer, "12.00")
        assert paid["acct_mulaid_pay"] == 12.0

    def delta(after: dict[str, Any], key: tuple[str, str], bucket: str) -> int:
        return int(after[key[0]].get(key[1], {}).get(bucket, 0)) - int(before[key[0]].get(key[1], {}).get(bucket, 0))

    async def counted() -> bool:
        after = await ops_json(client, federation, f"/stats?from={month}&to={month}")
        return delta(after, ("totals_by_use", "pharmacy"), "amount_fen") >= 1_200

    await eventually(counted, "the in-province wallet use reached the statistics")
    after = await ops_json(client, federation, f"/stats?from={month}&to={month}")
    assert delta(after, ("totals_by_scope", "same_pool"), "amount_fen") == 3_000
    assert delta(after, ("totals_by_scope", "in_province"), "amount_fen") == 4_000
    assert delta(after, ("totals_by_scope", "cross_province"), "amount_fen") == 5_000
    assert delta(after, ("totals_by_use", "transfer"), "person_times") == 3
    assert delta(after, ("totals_by_use", "pharmacy"), "amount_fen") == 1_200
    # The ledgers: wallets grew by what the statistics say was transferred, less the wallet use they count.
    summary_after = await _wallet_and_quota_totals(client, federation)
    assert summary_after["WALLET"] - summary_before["WALLET"] == 12_000 - 1_200
    csv = await ops(client, federation, "GET", f"/stats?from={month}&to={month}&format=csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert f"{month},wallet_use,pharmacy,640000,640000,," in csv.text


async def _wallet_and_quota_totals(client: FederationClient, federation: Federation) -> dict[str, int]:
    totals = {"WALLET": 0, "QUOTA": 0}
    for admdvs in federation.provinces:
        summary = await client.ledger_summary(admdvs, federation.internal_token)
        for kind in totals:
            totals[kind] += int(summary["totals_fen"].get(kind, 0))
    return totals


async def test_activity_gathers_a_persons_life_and_is_logged(federation: Federation,
                                                             client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    transfer_id = await settled_transfer(client, pair, 2_500)
    answer = await client.http.get(f"{client.hub_url()}/v1/ops/persons/{pair.relative.id_no}/activity",
                                   params={"reviewer": "王调查"}, headers=operator(federation))
    assert answer.status_code == 200, answer.text
    assert pair.relative.id_no not in answer.text and pair.giver.id_no not in answer.text
    activity = answer.json()
    assert activity["person"]["id_no_masked"].endswith(pair.relative.id_no[-4:])
    assert activity["person"]["name_masked"] and activity["person"]["name_masked"] != pair.relative.name
    [received] = activity["transfers"]
    assert (received["transfer_id"], received["role"], received["amount_fen"]) == (transfer_id, "received", 2_500)
    assert received["counterparty_name_masked"] and received["counterparty_name_masked"] != pair.giver.name
    log = await ops_json(client, federation, "/access-log")
    assert log[-1]["reviewer"] == "王调查" and log[-1]["action"] == "person.activity"
    wrong_check_digit = pair.relative.id_no[:17] + ("0" if pair.relative.id_no[17] != "0" else "1")
    for path, code in [(f"/persons/{wrong_check_digit}/activity", "INVALID_ID_NO"),
                       (f"/persons/{pair.relative.id_no}/activity?from=2026-02-01&to=2026-01-01", "INVALID_PERIOD")]:
        refused = await ops(client, federation, "GET", path)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, code), path
    unknown = new_person("640100")
    missing = await ops(client, federation, "GET", f"/persons/{unknown.id_no}/activity")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "PERSON_NOT_FOUND")


# -------------------------------------------------------------------------------------------- audit


async def verify(client: FederationClient, federation: Federation) -> dict[str, dict[str, Any]]:
    answer = await ops(client, federation, "POST", "/audit:verify")
    assert answer.status_code == 200, answer.text
    return {row["service"]: row for row in answer.json()}


async def test_audit_heads_are_checkpointed_and_the_federation_verifies(federation: Federation,
                                                                         client: FederationClient) -> None:
    pair = await bound_pair(client, "640100", "620100")
    await settled_transfer(client, pair, 1_000)
    services = {"hub", "gateway", *(f"node-{code}" for code in federation.provinces)}

    async def checkpointed() -> bool:
        heads = {row["service"]: row for row in await ops_json(client, federation, "/audit")}
        now = datetime.now(UTC)
        return set(heads) == services and all(
            row["last_checkpoint_at"] is not None and row["head_seq"] is not None and row["head_seq"] > 0
            and (now - datetime.fromisoformat(row["last_checkpoint_at"])).total_seconds() < 11
            for row in heads.values())

    await eventually(checkpointed, "every service's head checkpointed at the hub within 10 s", timeout_s=15)
    results = await verify(client, federation)
    assert set(results) == services
    assert all(row["ok"] for row in results.values()), results
    assert results["node-640000"]["entries_checked"] > 0


async def test_thousands_of_transfers_then_every_chain_verifies(federation: Federation, client: FederationClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The transfer bench's traffic (200 transfers of warm-up, then 2,000, 640000 → 620000) on this federation;
    then every service's chain verifies, each holding the heads checkpointed meanwhile."""
    from rich.console import Console

    from launcher import bench

    monkeypatch.setenv("YIBAO_HOME", str(federation.home))
    report = await bench._run(200, 10, Console(quiet=True), warmup_s=1)
    assert report["final_states"] == {"CREDITED": report["sent"]} and report["sent"] >= 2_000, report
    assert report["warmup_sent"] == 200 and report["lost"] == 0 and not report["errors"], report
    assert report["money"]["conserved"], report["money"]
    heads = {row["service"]: row["head_seq"] for row in await ops_json(client, federation, "/audit")}

    async def checkpointed_past_the_load() -> bool:
        now = {row["service"]: row for row in await ops_json(client, federation, "/audit")}
        return all((now[service]["last_checkpoint_seq"] or 0) >= (head_seq or 0) for service, head_seq in heads.items())

    await eventually(checkpointed_past_the_load, "a checkpoint round after the last transfer", timeout_s=15)
    results = await verify(client, federation)
    assert all(row["ok"] for row in results.values()), results
    assert results["node-640000"]["entries_checked"] > 4_000 and results["hub"]["entries_checked"] > 4_000


async def _node_db(federation: Federation, admdvs: str) -> Database:
    return await open_database(ServiceSettings(home=federation.home), f"node_{admdvs}")


async def _edit(federation: Federation, service: str, admdvs: str,
                change: Callable[[UnitOfWork], Awaitable[None]]) -> None:
    """Change the node's database while it is stopped (as someone editing its file would), then start it."""
    supervisor.signal_service(federation.home, service, signal.SIGTERM)
    try:
        database = await _node_db(federation, admdvs)
        try:
            async with UnitOfWork(database) as uow:
                await change(uow)
                await uow.commit()
        finally:
            await database.dispose()
    finally:
        supervisor.restart_service(federation.home, service)


async def test_tampering_with_a_stopped_nodes_database_is_detected(federation: Federation,
                                                                   client: FederationClient) -> None:
    admdvs, service = "350000", "node-350000"
    pair = await bound_pair(client, "350100", "350200")
    await settled_transfer(client, pair, 7_000)

    async def checkpointed_at_head() -> bool:
        heads = {row["service"]: row for row in await ops_json(client, federation, "/audit")}
        return bool(heads[service]["last_checkpoint_seq"] == heads[service]["head_seq"])

    await eventually(checkpointed_at_head, "the node's head checkpointed", timeout_s=15)
    assert (await verify(client, federation))[service]["ok"]
    database = await _node_db(federation, admdvs)
    try:
        async with ReadView(database) as view:
            journal = (await view.execute(sa.text("SELECT seq, body FROM audit_journal ORDER BY seq"))).all()
            line = (await view.execute(sa.text(
                "SELECT line_id, entry_id, account_id, amount_fen FROM ledger_lines "
                "WHERE account_id LIKE 'WALLET:%' ORDER BY line_id DESC LIMIT 1"))).one()
    finally:
        await database.dispose()
    posting_seq = next(int(r.seq) for r in journal if f'"entry_id":{line.entry_id},' in r.body)
    touching = [int(r.seq) for r in journal if f'"{line.account_id}"' in r.body]
    victim_seq, victim_body = int(journal[1].seq), str(journal[1].body)
    edits: list[tuple[str, str, dict[str, Any], str, dict[str, Any], int]] = [
        ("a journal entry", "UPDATE audit_journal SET body = :body WHERE seq = :seq",
         {"body": victim_body.replace('"ref":"', '"ref":"x'), "seq": victim_seq},
         "UPDATE audit_journal SET body = :body WHERE seq = :seq", {"body": victim_body, "seq": victim_seq},
         victim_seq),
        ("a posting", "UPDATE ledger_lines SET amount_fen = amount_fen + 1 WHERE line_id = :id", {"id": line.line_id},
         "UPDATE ledger_lines SET amount_fen = amount_fen - 1 WHERE line_id = :id", {"id": line.line_id},
         posting_seq),
        ("a balance", "UPDATE accounts SET balance_fen = balance_fen + 100 WHERE account_id = :a",
         {"a": line.account_id},
         "UPDATE accounts SET balance_fen = balance_fen - 100 WHERE account_id = :a", {"a": line.account_id},
         touching[-1]),
    ]
    for what, tamper, params, restore, restore_params, first_bad in edits:
        async def apply(uow: UnitOfWork, sql: str = tamper, p: dict[str, Any] = params) -> None:
            await uow.execute(sa.text(sql), p)

        async def undo(uow: UnitOfWork, sql: str = restore, p: dict[str, Any] = restore_params) -> None:
            await uow.execute(sa.text(sql), p)

        await _edit(federation, service, admdvs, apply)
        result = (await verify(client, federation))[service]
        assert (result["ok"], result["first_bad_seq"]) == (False, first_bad), (what, result)
        await _edit(federation, service, admdvs, undo)
        assert (await verify(client, federation))[service]["ok"], what
