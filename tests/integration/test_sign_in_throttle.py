"""Sign-in throttling (issue 13, API.md "Identity"), on the hub's real app in process with a set clock: five
failures for one ID number, or thirty from one client address, within 15 minutes → 429 TOO_MANY_ATTEMPTS for the
next 15 minutes even with the right credentials; a success resets the person's count; throttled attempts are
logged with the ID masked. (The real federation's test, with a hub restart, is tests/e2e/test_throttling.py.)"""

from __future__ import annotations

import logging

import httpx
import pytest

from shared.ids import make_id_no, mask_id_no
from tests.support.inprocess import InProcessFederation
from tests.support.stories import family


def hub(fed: InProcessFederation, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fed.hub_app, client=(address, 40000)),
                             base_url="http://hub")


async def sign_in(client: httpx.AsyncClient, id_no: str, name: str, password: str) -> httpx.Response:
    return await client.post("/v1/identity/sessions", json={"id_no": id_no, "name": name, "method": "password",
                                                             "password": password})


def code_of(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def test_five_failures_block_the_person_for_15_minutes(fed: InProcessFederation,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    giver, _ = await family(fed)
    async with hub(fed, "198.51.100.1") as one, hub(fed, "198.51.100.2") as other:
        for _ in range(5):
            failed = await sign_in(one, giver.id_no, giver.name, "wrong")
            assert (failed.status_code, code_of(failed)) == (401, "AUTHENTICATION_FAILED")
        with caplog.at_level(logging.WARNING, logger="yibao.hub.identity"):
            for client in (one, other):  # the person is blocked, from any address, right password or not
                blocked = await sign_in(client, giver.id_no, giver.name, "secret-pw")
                assert (blocked.status_code, code_of(blocked)) == (429, "TOO_MANY_ATTEMPTS"), blocked.text
        logged = " ".join(record.getMessage() for record in caplog.records)
        assert mask_id_no(giver.id_no) in logged and giver.id_no not in logged
        fed.clock.advance(14 * 60)
        assert (await sign_in(one, giver.id_no, giver.name, "secret-pw")).status_code == 429
        fed.clock.advance(61)
        assert (await sign_in(one, giver.id_no, giver.name, "secret-pw")).status_code == 201


async def test_a_success_resets_the_persons_count(fed: InProcessFederation) -> None:
    giver, _ = await family(fed)
    async with hub(fed, "198.51.100.3") as client:
        for _ in range(2):
            for _ in range(4):
                assert (await sign_in(client, giver.id_no, giver.name, "wrong")).status_code == 401
            assert (await sign_in(client, giver.id_no, giver.name, "secret-pw")).status_code == 201
        # Failures older than the 15-minute window do not add up either.
        for _ in range(4):
            assert (await sign_in(client, giver.id_no, giver.name, "wrong")).status_code == 401
        fed.clock.advance(15 * 60)
        assert (await sign_in(client, giver.id_no, giver.name, "wrong")).status_code == 401
        assert (await sign_in(client, giver.id_no, giver.name, "secret-pw")).status_code == 201


async def test_thirty_failures_block_the_address(fed: InProcessFederation) -> None:
    giver, _ = await family(fed)
    async with hub(fed, "203.0.113.7") as noisy, hub(fed, "203.0.113.8") as quiet:
        for k in range(30):
            # Thirty different (well-formed) ID numbers: no person reaches their own limit.
            failed = await sign_in(noisy, make_id_no(f"11010119700101{k:03d}"), "某某", "x")
            assert (failed.status_code, code_of(failed)) == (401, "AUTHENTICATION_FAILED"), k
        blocked = await sign_in(noisy, giver.id_no, giver.name, "secret-pw")
        assert (blocked.status_code, code_of(blocked)) == (429, "TOO_MANY_ATTEMPTS")
        assert (await sign_in(quiet, giver.id_no, giver.name, "secret-pw")).status_code == 201
        fed.clock.advance(15 * 60 + 1)
        assert (await sign_in(noisy, giver.id_no, giver.name, "secret-pw")).status_code == 201


async def test_a_malformed_id_number_is_422_and_not_counted(fed: InProcessFederation) -> None:
    giver, _ = await family(fed)
    async with hub(fed, "198.51.100.9") as client:
        for _ in range(6):
            bad = await sign_in(client, giver.id_no[:-1] + ("0" if giver.id_no[-1] != "0" else "1"), giver.name, "x")
            assert (bad.status_code, code_of(bad)) == (422, "INVALID_ID_NO")
        assert (await sign_in(client, giver.id_no, giver.name, "secret-pw")).status_code == 201
