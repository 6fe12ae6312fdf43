"""Sums past 2^31 fen on the real federation (review scale_out.md B13). PostgreSQL's INTEGER is 32-bit: a
province that imported 300 employees with 100,000 yuan each (3,000,000,000 fen) answered 500 INTERNAL and
imported nobody, because SYS:FUNDING (minus every opening balance) passed -2^31. SQLite's INTEGER was always
64-bit; the federation fixture runs this once on each."""

from __future__ import annotations

import uuid

import pytest

from launcher.client import FederationClient
from launcher.people import new_person
from tests.conftest import Federation
from tests.e2e.flows import bind, enrol, face_login, me, money_totals, operator_post, send, wait_transfer

pytestmark = pytest.mark.federation

PROVINCE = "640000"
EMPLOYEES = 300
OPENING_FEN = 10_000_000  # 100,000 yuan
MONTHLY_FEN = 10_000_000
INT32_MAX = 2**31 - 1


async def _funding_fen(client: FederationClient, federation: Federation, admdvs: str) -> int:
    summary = await client.ledger_summary(admdvs, federation.internal_token)
    assert summary["sum_fen"] == 0 and summary["journal_balanced"], summary
    funding: int = summary["totals_fen"]["SYS:FUNDING"]
    return funding


async def test_a_province_imports_and_credits_billions_of_fen(federation: Federation,
                                                              client: FederationClient) -> None:
    before = await money_totals(client, federation)
    funding_before = await _funding_fen(client, federation, PROVINCE)

    # 300 employees at 100,000 yuan each in one import: 3,000,000,000 fen, past 2^31 in one transaction.
    staff = [new_person("640100", personal_account_fen=OPENING_FEN) for _ in range(EMPLOYEES)]
    imported = await client.import_persons(PROVINCE, [p.import_body(with_password=False) for p in staff])
    assert imported == {"imported": EMPLOYEES, "rejected": []}
    opening_fen = EMPLOYEES * OPENING_FEN
    assert opening_fen > INT32_MAX
    assert await _funding_fen(client, federation, PROVINCE) == funding_before - opening_fen

    # A month's payroll for all of them, and one credit that alone is above 2^31 fen (30,000,000 yuan).
    payroll = await operator_post(client, PROVINCE, "/v1/admin/accounts:credit-monthly", {
        "credits": [{"id_no": p.id_no, "amount_fen": MONTHLY_FEN} for p in staff]})
    assert payroll.status_code == 200, payroll.text
    assert payroll.json() == {"credited": EMPLOYEES, "total_fen": EMPLOYEES * MONTHLY_FEN}
    big_fen = 3_000_000_000
    boss = staff[0]
    bonus = await operator_post(client, PROVINCE, "/v1/admin/accounts:credit-monthly", {
        "credits": [{"id_no": boss.id_no, "amount_fen": big_fen}]})
    assert bonus.status_code == 200, bonus.text
    credited_fen = EMPLOYEES * MONTHLY_FEN + big_fen
    funding_after = await _funding_fen(client, federation, PROVINCE)
    assert funding_after == funding_before - opening_fen - credited_fen
    assert funding_after < -INT32_MAX - 1

    boss_session = await face_login(client, boss)
    assert (await me(client, boss_session))["personal_account_fen"] == OPENING_FEN + MONTHLY_FEN + big_fen
    other = await face_login(client, staff[-1])
    assert (await me(client, other))["personal_account_fen"] == OPENING_FEN + MONTHLY_FEN

    # Money still moves out of a province whose funding account is far past -2^31: a transfer to Gansu.
    mother = new_person("620100", employee=False)
    await enrol(client, mother)
    mother_session = await face_login(client, mother)
    assert (await client.call(mother_session, "POST", "/v1/wallet:open")).status_code == 201
    pair = await bind(client, boss, boss_session, mother, mother_session, "parent")
    accepted = await send(client, pair, 100_000, key=uuid.uuid4().hex)
    done = await wait_transfer(client, boss_session, accepted["transfer_id"])
    assert done["state"] == "CREDITED", done
    assert (await me(client, boss_session))["personal_account_fen"] == OPENING_FEN + MONTHLY_FEN + big_fen - 100_000
    assert (await me(client, mother_session))["wallet"]["balance_fen"] == 100_000

    # Every ledger sums to zero and every journal entry balances; all that was paid in is held by citizens.
    after = await money_totals(client, federation)
    assert after["held_fen"] - before["held_fen"] == opening_fen + credited_fen
    assert after["citizen_fen"] - before["citizen_fen"] == opening_fen + credited_fen
    assert after["in_flight_fen"] == 0
