"""Sign-in throttling on the real federation (issue 13 point 4): five failures for one ID number → 429
TOO_MANY_ATTEMPTS even with the right credentials, still so after the hub restarts (the counts are in its
database); a success resets the person's count; the throttled attempt is logged with the ID masked, never in
clear. The address limit and the 15-minute windows are played with a set clock in
tests/integration/test_sign_in_throttle.py (here every client is 127.0.0.1, and other tests sign in from it too)."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from launcher import supervisor
from launcher.client import FederationClient
from launcher.people import new_person
from shared.ids import mask_id_no
from tests.conftest import Federation
from tests.e2e.flows import enrol

pytestmark = pytest.mark.federation


async def sign_in(client: FederationClient, id_no: str, name: str, password: str) -> httpx.Response:
    return await client.http.post(f"{client.hub_url()}/v1/identity/sessions", json={
        "id_no": id_no, "name": name, "method": "password", "password": password})


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def test_five_failures_block_the_person_across_a_hub_restart(client: FederationClient,
                                                                   federation: Federation) -> None:
    person, other = new_person("640100"), new_person("640100")
    await enrol(client, person, other)
    for _ in range(5):
        failed = await sign_in(client, person.id_no, person.name, "not-the-password")
        assert (failed.status_code, code_of(failed)) == (401, "AUTHENTICATION_FAILED"), failed.text
    blocked = await sign_in(client, person.id_no, person.name, person.password)
    assert (blocked.status_code, code_of(blocked)) == (429, "TOO_MANY_ATTEMPTS"), blocked.text
    face = await client.http.post(f"{client.hub_url()}/v1/identity/sessions", json={
        "id_no": person.id_no, "name": person.name, "method": "face", "face_image_b64": "AAAA"})
    assert (face.status_code, code_of(face)) == (429, "TOO_MANY_ATTEMPTS")

    supervisor.signal_service(federation.home, "hub", signal.SIGTERM)
    supervisor.restart_service(federation.home, "hub")
    still = await sign_in(client, person.id_no, person.name, person.password)
    assert (still.status_code, code_of(still)) == (429, "TOO_MANY_ATTEMPTS"), still.text
    # Someone else, from the same address, is not affected.
    assert (await sign_in(client, other.id_no, other.name, other.password)).status_code == 201

    log_text = (federation.home / "logs" / "hub.log").read_text(encoding="utf-8", errors="replace")
    assert mask_id_no(person.id_no) in log_text
    assert person.id_no not in log_text


async def test_a_success_resets_the_persons_count(client: FederationClient) -> None:
    person = new_person("620100")
    await enrol(client, person)
    for _ in range(2):
        for _ in range(4):
            assert (await sign_in(client, person.id_no, person.name, "wrong")).status_code == 401
        signed_in = await sign_in(client, person.id_no, person.name, person.password)
        assert signed_in.status_code == 201, signed_in.text
