"""Cancels (2103) and reversals (2601) on the real federation: every part goes back where it came from, clearing
records the withdrawal, a reversal before its original refuses the late original, and a reversal finds a settle
the gateway never logged."""

from __future__ import annotations

import pytest

from launcher.client import FederationClient
from launcher.pos_client import Item, ok
from tests.conftest import Federation
from tests.e2e.flows import face_login, money_totals
from tests.e2e.pos import (
    DRUG,
    TISSUES,
    Tills,
    at_ningxia_node,
    balances,
    enrolled,
    family_with_wallet,
    obligations,
    settle_at_ningxia_node,
)

pytestmark = pytest.mark.federation


async def test_cancel_returns_each_part_where_it_came_from(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    mother, session = await family_with_wallet(client, "640300", relative_pa_fen=2_000, wallet_fen=10_000)
    payer = await tills.chengdu.payer("02", mother.id_no)
    before = await money_totals(client, federation)
    info = ok(await tills.chengdu.settle(payer, [Item(DRUG, 2, "40.00"), Item(TISSUES, 1, "3.00")]))["setlinfo"]
    assert (info["acct_pay"], info["acct_mulaid_pay"], info["psn_cash_pay"]) == (20.0, 60.0, 3.0)
    assert await balances(client, session) == (0, 4_000)

    # Another pharmacy cannot cancel it, nor can the right one for another person.
    foreign = await tills.chengdu_other.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no)
    assert foreign["infcode"] == -1 and "another institution" in foreign["err_msg"]
    wrong_person = await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], "640000" + "0" * 10)
    assert wrong_person["infcode"] == -1
    assert await balances(client, session) == (0, 4_000)

    cancelled = ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))["setlinfo"]
    assert (cancelled["acct_pay"], cancelled["acct_mulaid_pay"], cancelled["cash_payamt"],
            cancelled["psn_pay"]) == (20.0, 60.0, 3.0, 83.0)
    assert (cancelled["balc"], cancelled["wallet_balc"], cancelled["setl_state"]) == (20.0, 100.0, "CANCELLED")
    assert await balances(client, session) == (2_000, 10_000)
    assert await money_totals(client, federation) == before
    # Clearing: the charge, then its withdrawal.
    assert await obligations(federation, info["setl_id"], expected=2) == [
        ("POS", "640000", "510000", 8_000), ("POS_REFUND", "640000", "510000", -8_000)]
    again = ok(await tills.chengdu.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no))  # moves nothing
    assert again["setlinfo"]["setl_state"] == "CANCELLED"
    assert await balances(client, session) == (2_000, 10_000)


async def test_reversal_undoes_a_settle_or_a_cancel_and_refuses_a_presettle(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    till = tills.chengdu

    pre_msgid = till.new_msgid()
    ok(await till.call("2101", till.purchase(payer, [Item(DRUG, 1, "10.00")]), msgid=pre_msgid))
    refused = await till.reverse(pre_msgid, "2101", payer.psn_no)
    assert refused["infcode"] == -1 and "2101" in refused["err_msg"]
    mislabelled = await till.reverse(pre_msgid, "2102", payer.psn_no)
    assert mislabelled["infcode"] == -1 and "2101" in mislabelled["err_msg"]

    settle_msgid = till.new_msgid()
    info = ok(await till.settle(payer, [Item(DRUG, 1, "10.00")], msgid=settle_msgid))["setlinfo"]
    assert await balances(client, session) == (9_000, None)
    undone = ok(await till.reverse(settle_msgid, "2102", payer.psn_no))
    assert undone["undone"] is True and undone["setlinfo"]["setl_state"] == "REVERSED"
    assert await balances(client, session) == (10_000, None)
    assert ok(await till.reverse(settle_msgid, "2102", payer.psn_no))["undone"] is False  # once only
    gone = await till.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no)
    assert gone["infcode"] == -1 and "reversed" in gone["err_msg"]
    assert await obligations(federation, info["setl_id"], expected=2) == [
        ("POS", "640000", "510000", 1_000), ("POS_REFUND", "640000", "510000", -1_000)]

    # Reversing a cancel puts the settlement back in force (charged again).
    info = ok(await till.settle(payer, [Item(DRUG, 2, "10.00")]))["setlinfo"]
    cancel_msgid = till.new_msgid()
    ok(await till.cancel(info["setl_id"], info["mdtrt_id"], payer.psn_no, msgid=cancel_msgid))
    assert await balances(client, session) == (10_000, None)
    restored = ok(await till.reverse(cancel_msgid, "2103", payer.psn_no))
    assert restored["undone"] is True and restored["setlinfo"]["setl_state"] == "SETTLED"
    assert await balances(client, session) == (8_000, None)
    assert [kind for kind, *_ in await obligations(federation, info["setl_id"], expected=3)] == \
        ["POS", "POS_REFUND", "POS"]


async def test_a_reversal_before_its_original_refuses_the_late_original(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    person = await enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    late_msgid = tills.chengdu.new_msgid()
    nothing = ok(await tills.chengdu.reverse(late_msgid, "2102", payer.psn_no))
    assert nothing["undone"] is False
    late = await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")], msgid=late_msgid)
    assert late["infcode"] == -1 and "reversed" in late["err_msg"]
    assert await balances(client, session) == (10_000, None)

    # The same rule at the node itself (the gateway asks it when the original is in flight there).
    omsgid, rmsgid = tills.chengdu.new_msgid(), tills.chengdu.new_msgid()
    reversed_first = await at_ningxia_node(client, federation, "reverse", {
        "msgid": rmsgid, "omsgid": omsgid, "oinfno": "2102", "psn_no": payer.psn_no,
        "fixmedins_code": tills.chengdu.fixmedins_code})
    assert reversed_first.status_code == 200 and reversed_first.json()["effect"] == "NONE"
    original = await settle_at_ningxia_node(client, federation, tills.chengdu, payer, omsgid)
    assert original.status_code == 409 and original.json()["error"]["code"] == "MSGID_REVERSED"
    assert await balances(client, session) == (10_000, None)


async def test_a_reversal_finds_a_settle_the_gateway_never_logged(
        federation: Federation, client: FederationClient, tills: Tills) -> None:
    """The gateway restarted after the payer's node applied a 2102 and before the gateway's log of it was
    committed: its 2601 asks the payer's home province (where the psn_no says), which gives the money back,
    and the original, sent again, is refused."""
    person = await enrolled(client, "640100", pa_fen=10_000)
    session = await face_login(client, person)
    payer = await tills.chengdu.payer("02", person.id_no)
    msgid = tills.chengdu.new_msgid()
    applied = await settle_at_ningxia_node(client, federation, tills.chengdu, payer, msgid)
    assert applied.status_code == 200, applied.text
    assert await balances(client, session) == (9_000, None)

    undone = ok(await tills.chengdu.reverse(msgid, "2102", payer.psn_no))
    assert undone["undone"] is True and undone["setlinfo"]["setl_state"] == "REVERSED"
    assert await balances(client, session) == (10_000, None)
    again = await tills.chengdu.settle(payer, [Item(DRUG, 1, "10.00")], msgid=msgid)
    assert again["infcode"] == -1 and "reversed" in again["err_msg"]
    assert await balances(client, session) == (10_000, None)
