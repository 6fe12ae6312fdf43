"""Supervision in process (issue 12 points 1–5): the hub's real operator routes and Kafka handlers and the nodes'
real use cases on their own migrated databases, the outboxes standing in for Kafka (tests/support/inprocess.py),
a FixedClock. Risk rules are configured over the API; a held transfer is released (credited once) or rejected
(refunded once, both told), also when every message is delivered twice and when a decision is repeated; the
audit chain detects an edited journal entry, posting or balance."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.national_hub.service_layer import holds
from services.national_hub.service_layer import transfers as hub_transfers
from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from services.province_node.service_layer import bindings as node_bindings
from shared import audit
from shared.db import ReadView, UnitOfWork
from tests.support.inprocess import DESTINATION, SOURCE, TRANSFER_TIMEOUT_S, InProcessFederation
from tests.support.stories import (
    GIVER_PA_FEN,
    Person,
    active_binding,
    assert_money_conserved,
    balance_fen,
    family,
    open_wallet,
    send_transfer,
    transfer_out_state,
)

OPERATOR = {"authorization": "Bearer contract-test-operator-token"}
AMOUNT_FEN = 50_000


@pytest.fixture
async def ops(fed: InProcessFederation) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fed.hub_app), base_url="http://hub") as client:
        yield client


def keyed(key: str | None = None) -> dict[str, str]:
    return OPERATOR | {"idempotency-key": key or uuid.uuid4().hex}


async def hold_large_transfers(ops: httpx.AsyncClient) -> None:
    answer = await ops.put("/v1/ops/risk-rules/NEW_BINDING_LARGE_TRANSFER", headers=keyed(),
                           json={"action": "hold", "params": {"min_amount_fen": AMOUNT_FEN}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == "hold" and answer.json()["params"]["min_amount_fen"] == AMOUNT_FEN


async def held_transfer(fed: InProcessFederation, ops: httpx.AsyncClient) -> tuple[Person, Person, str, str]:
    """A transfer a `hold` rule caught: HELD at the hub and (reason RISK_REVIEW) at the giver's node."""
    await hold_large_transfers(ops)
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, AMOUNT_FEN)
    await fed.pump()
    assert (await hub_row(fed, transfer_id)).state == "HELD"
    assert await transfer_out_state(fed, giver, transfer_id) == "HELD"
    alerts = (await ops.get("/v1/ops/alerts?state=open&rule_id=NEW_BINDING_LARGE_TRANSFER",
                            headers=OPERATOR)).json()
    [alert] = [a for a in alerts if a.get("held_transfer_id") == transfer_id]
    assert alert["subject"]["psn_no"] == giver.psn_no and alert["detail"]["amount_fen"] == AMOUNT_FEN
    return giver, mother, transfer_id, alert["alert_id"]


async def hub_row(fed: InProcessFederation, transfer_id: str) -> Any:
    async with ReadView(fed.hub.db) as view:
        return (await view.execute(sa.select(hub_transfers.TRANSFERS).where(
            hub_transfers.TRANSFERS.c.transfer_id == transfer_id))).one()


async def notices(fed: InProcessFederation, person: Person) -> list[str]:
    async with ReadView(fed.node(person.admdvs).db) as view:
        return [row["text"] for row in await node_bindings.list_notifications(view, person.psn_no)]


# ---------------------------------------------------------------------------------------------- rules


async def test_rules_are_listed_changed_and_refused_as_the_contract_says(ops: httpx.AsyncClient) -> None:
    rules = (await ops.get("/v1/ops/risk-rules", headers=OPERATOR)).json()
    assert [r["rule_id"] for r in rules] == [
        "HIGH_FREQUENCY_TRANSFERS", "NEW_BINDING_LARGE_TRANSFER", "MANY_GIVERS_ONE_RELATIVE",
        "LARGE_REMOTE_PAYMENT", "INSTITUTION_CLUSTER", "SPLIT_PURCHASES", "DISTANT_PAYMENTS"]
    assert rules[0] | {"description": ""} == {"rule_id": "HIGH_FREQUENCY_TRANSFERS", "enabled": True,
                                              "action": "alert", "params": {"max_count": 5, "window_min": 60},
                                              "description": ""}
    changed = await ops.put("/v1/ops/risk-rules/SPLIT_PURCHASES", headers=keyed(),
                            json={"enabled": False, "params": {"max_count": 7}})
    assert changed.status_code == 200 and changed.json()["params"] == {"max_count": 7, "window_min": 60}
    cases = [("NO_SUCH_RULE", {"enabled": True}, 404, "RULE_NOT_FOUND"),
             ("SPLIT_PURCHASES", {"params": {"min_persons": 3}}, 422, "INVALID_RULE_PARAM"),
             ("SPLIT_PURCHASES", {"params": {"window_min": -1}}, 422, "INVALID_RULE_PARAM"),
             ("SPLIT_PURCHASES", {"action": "hold"}, 422, "INVALID_RULE_ACTION"),
             ("SPLIT_PURCHASES", [1, 2], 422, "VALIDATION_ERROR")]
    for rule_id, body, status, code in cases:
        refused = await ops.put(f"/v1/ops/risk-rules/{rule_id}", headers=keyed(), json=body)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), (rule_id, body)
    after = {r["rule_id"]: r for r in (await ops.get("/v1/ops/risk-rules", headers=OPERATOR)).json()}
    assert after["SPLIT_PURCHASES"]["enabled"] is False  # persisted; the refusals changed nothing
    assert after["SPLIT_PURCHASES"]["params"] == {"max_count": 7, "window_min": 60}


# ---------------------------------------------------------------------------------------------- holds


async def test_release_credits_once_even_when_everything_is_delivered_twice(
        fed: InProcessFederation, ops: httpx.AsyncClient) -> None:
    giver, mother, transfer_id, alert_id = await held_transfer(fed, ops)
    assert any("审核" in text for text in await notices(fed, giver))
    # Held: no timeout, whatever the time.
    fed.clock.advance(TRANSFER_TIMEOUT_S * 10)
    async with UnitOfWork(fed.hub.db) as uow:
        assert await hub_transfers.cancel_overdue(fed.hub, uow) == 0
        await uow.commit()
    key = uuid.uuid4().hex
    body = {"decision": "release", "reviewer": "张审核", "note": "genuine: called the giver"}
    first = await ops.post(f"/v1/ops/alerts/{alert_id}:resolve", headers=keyed(key), json=body)
    assert first.status_code == 200, first.text
    assert first.json()["state"] == "resolved" and first.json()["decision"] == "release"
    again = await ops.post(f"/v1/ops/alerts/{alert_id}:resolve", headers=keyed(key), json=body)
    assert (again.status_code, again.json()) == (200, first.json())
    other = await ops.post(f"/v1/ops/alerts/{alert_id}:resolve", headers=keyed(), json=body)
    assert (other.status_code, other.json()["error"]["code"]) == (409, "ALERT_ALREADY_RESOLVED")
    await fed.pump(twice=True)
    assert (await hub_row(fed, transfer_id)).state == "CREDITED"
    assert await transfer_out_state(fed, giver, transfer_id) == "CREDITED"
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == AMOUNT_FEN
    await assert_money_conserved(fed, GIVER_PA_FEN)
    log = (await ops.get("/v1/ops/access-log", headers=OPERATOR)).json()
    assert log[-1]["reviewer"] == "张审核" and log[-1]["action"] == "alert.release"


async def test_reject_refunds_once_and_tells_both(fed: InProcessFederation, ops: httpx.AsyncClient) -> None:
    giver, mother, transfer_id, alert_id = await held_transfer(fed, ops)
    answer = await ops.post(f"/v1/ops/alerts/{alert_id}:resolve", headers=keyed(),
                            json={"decision": "reject", "reviewer": "李复审", "note": "fake kinship"})
    assert answer.status_code == 200, answer.text
    await fed.pump(twice=True)
    row = await hub_row(fed, transfer_id)
    assert (row.state, row.reason) == ("REFUNDED", "RISK_REJECTED")
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    assert await balance_fen(fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN
    assert await balance_fen(fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 0
    assert any("审核未通过" in text for text in await notices(fed, giver))
    assert any("审核未通过" in text for text in await notices(fed, mother))
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_a_decision_repeated_in_another_transaction_moves_nothing(
        fed: InProcessFederation, ops: httpx.AsyncClient) -> None:
    """A reviewer's retry after a lost answer (another key) or a second reviewer: 409, and the money moved once."""
    giver, _, transfer_id, alert_id = await held_transfer(fed, ops)
    async with UnitOfWork(fed.hub.db) as uow:
        resolved = await holds.resolve(fed.hub, uow, alert_id, holds.Decision("reject", "a"))
        await uow.commit()
    assert resolved["decision"] == "reject", resolved
    with pytest.raises(Exception) as second:
        async with UnitOfWork(fed.hub.db) as uow:
            await holds.resolve(fed.hub, uow, alert_id, holds.Decision("release", "b"))
    assert getattr(second.value, "code", None) == "ALERT_ALREADY_RESOLVED"
    await fed.pump()
    assert await transfer_out_state(fed, giver, transfer_id) == "REFUNDED"
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_release_or_reject_of_an_alert_holding_nothing_is_refused(
        fed: InProcessFederation, ops: httpx.AsyncClient) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    lowered = await ops.put("/v1/ops/risk-rules/NEW_BINDING_LARGE_TRANSFER", headers=keyed(),
                            json={"params": {"min_amount_fen": AMOUNT_FEN}})
    assert lowered.status_code == 200 and lowered.json()["action"] == "alert"
    await send_transfer(fed, giver, binding_id, AMOUNT_FEN)  # alerted, not held
    await fed.pump()
    [alert] = (await ops.get("/v1/ops/alerts?state=open", headers=OPERATOR)).json()
    assert alert["rule_id"] == "NEW_BINDING_LARGE_TRANSFER" and "held_transfer_id" not in alert
    for decision in ("release", "reject"):
        refused = await ops.post(f"/v1/ops/alerts/{alert['alert_id']}:resolve", headers=keyed(),
                                 json={"decision": decision, "reviewer": "r", "note": ""})
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, "ALERT_HOLDS_NOTHING")
    bad = await ops.post(f"/v1/ops/alerts/{alert['alert_id']}:resolve", headers=keyed(),
                         json={"decision": "maybe", "reviewer": "r"})
    assert bad.status_code == 422
    dismissed = await ops.post(f"/v1/ops/alerts/{alert['alert_id']}:resolve", headers=keyed(),
                               json={"decision": "dismiss", "reviewer": "r", "note": "ok"})
    assert dismissed.status_code == 200 and dismissed.json()["state"] == "resolved"
    assert (await ops.get("/v1/ops/alerts?state=open", headers=OPERATOR)).json() == []


# ---------------------------------------------------------------------------------- activity and stats


async def test_activity_statistics_and_the_access_log(fed: InProcessFederation, ops: httpx.AsyncClient) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    transfer_id = await send_transfer(fed, giver, binding_id, 20_000)
    await fed.pump()
    answer = await ops.get(f"/v1/ops/persons/{giver.id_no}/activity?reviewer=王调查", headers=OPERATOR)
    assert answer.status_code == 200, answer.text
    activity = answer.json()
    assert activity["person"]["psn_no"] == giver.psn_no and giver.id_no not in answer.text
    assert [b["binding_id"] for b in activity["bindings"]] == [binding_id]
    [sent] = activity["transfers"]
    assert (sent["transfer_id"], sent["role"], sent["amount_fen"], sent["state"]) == (transfer_id, "sent", 20_000,
                                                                                      "CREDITED")
    assert sent["counterparty_name_masked"] == "李*英"
    log = (await ops.get("/v1/ops/access-log", headers=OPERATOR)).json()
    assert log[-1]["reviewer"] == "王调查" and log[-1]["action"] == "person.activity"
    assert log[-1]["subject_masked"].startswith("6401") and "*" in log[-1]["subject_masked"]
    for path, status, code in [
            ("/v1/ops/persons/640102198503120099/activity", 422, "INVALID_ID_NO"),
            (f"/v1/ops/persons/{giver.id_no}/activity?from=2025-02-01&to=2025-01-01", 422, "INVALID_PERIOD"),
            (f"/v1/ops/persons/{giver.id_no}/activity?from=2025-13-01", 422, "INVALID_PERIOD")]:
        refused = await ops.get(path, headers=OPERATOR)
        assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), path
    month = fed.clock.now().strftime("%Y-%m")
    stats = (await ops.get(f"/v1/ops/stats?from={month}&to={month}", headers=OPERATOR)).json()
    [row] = [r for r in stats["rows"] if r["kind"] == "transfer"]
    assert (row["from_admdvs"], row["to_admdvs"], row["scope"], row["person_times"], row["amount_fen"]) == (
        SOURCE, DESTINATION, "cross_province", 1, 20_000)
    assert stats["totals_by_scope"]["cross_province"]["amount_fen"] == 20_000
    csv = await ops.get(f"/v1/ops/stats?from={month}&to={month}&format=csv", headers=OPERATOR)
    assert csv.headers["content-type"].startswith("text/csv")
    assert f"{month},transfer,transfer,{SOURCE},{DESTINATION},cross_province,1,20000" in csv.text
    later = await ops.get("/v1/ops/stats?from=2025-02&to=2025-01", headers=OPERATOR)
    assert (later.status_code, later.json()["error"]["code"]) == (422, "INVALID_PERIOD")


# ---------------------------------------------------------------------------------------------- audit


async def test_the_audit_chain_detects_an_edited_entry_posting_or_balance(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    await open_wallet(fed, mother)
    binding_id = await active_binding(fed, giver, mother)
    for amount in (10_000, 20_000):
        await send_transfer(fed, giver, binding_id, amount)
    await fed.pump()
    node = fed.node(SOURCE)
    await audit.ensure_genesis(node.db, ledger_repo.AUDITED_LEDGER)  # already has entries: a no-op
    async with ReadView(node.db) as view:
        head = await audit.head(view)
    checkpoints = {head.head_seq: head.head_hash}
    clean = await audit.verify(node.db, checkpoints, ledger_repo.AUDITED_LEDGER)
    assert clean.ok and clean.entries_checked == head.entries > 4, clean
    lines, accounts = ledger_repo.LINES, ledger_repo.ACCOUNTS
    pa = ledger.personal_account(giver.psn_no)

    async def tampered(statement: Any) -> audit.Verdict:
        """Change the node's database behind its back (as an edit of its file would), then verify."""
        async with UnitOfWork(node.db) as uow:
            await uow.execute(statement)
            await uow.commit()
        return await audit.verify(node.db, checkpoints, ledger_repo.AUDITED_LEDGER)

    # A balance changed behind the service's back: the last entry touching that account is named.
    verdict = await tampered(sa.update(accounts).where(accounts.c.account_id == pa).values(
        balance_fen=accounts.c.balance_fen + 100))
    assert not verdict.ok and verdict.first_bad_seq is not None and "balance" in (verdict.reason or "")
    await tampered(sa.update(accounts).where(accounts.c.account_id == pa).values(
        balance_fen=accounts.c.balance_fen - 100))
    assert (await audit.verify(node.db, checkpoints, ledger_repo.AUDITED_LEDGER)).ok
    # A posting edited: its journal entry's seq.
    async with ReadView(node.db) as view:
        first_line = (await view.execute(sa.select(lines).where(lines.c.account_id == pa)
                                         .order_by(lines.c.line_id).limit(1))).one()
        rows = await audit.journal_rows(view)
    posting_seq = next(int(r.seq) for r in rows if f'"entry_id":{first_line.entry_id},' in r.body)
    verdict = await tampered(sa.update(lines).where(lines.c.line_id == first_line.line_id).values(
        amount_fen=first_line.amount_fen - 1))
    assert (verdict.ok, verdict.first_bad_seq) == (False, posting_seq), verdict
    await tampered(sa.update(lines).where(lines.c.line_id == first_line.line_id).values(
        amount_fen=first_line.amount_fen))
    # A journal entry edited: its own seq.
    journal = audit.JOURNAL
    victim = rows[2]
    verdict = await tampered(sa.update(journal).where(journal.c.seq == victim.seq).values(
        body=victim.body.replace('"ref":', '"ref": ')))
    assert (verdict.ok, verdict.first_bad_seq) == (False, int(victim.seq)), verdict
    # ... and a chain rewritten from there on (hashes recomputed) no longer holds the head the hub kept.
    async with UnitOfWork(node.db) as uow:
        await uow.execute(sa.update(journal).where(journal.c.seq == victim.seq).values(body=victim.body))
        await uow.commit()
    assert (await audit.verify(node.db, checkpoints, ledger_repo.AUDITED_LEDGER)).ok
    forged = {head.head_seq: "0" * 64}
    verdict = await audit.verify(node.db, forged, ledger_repo.AUDITED_LEDGER)
    assert (verdict.ok, verdict.first_bad_seq) == (False, head.head_seq)
