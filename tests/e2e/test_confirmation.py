"""Issue 13 on the real federation: confirm-then-send (a transfer or a quota right after `:confirm` answered
ACTIVE is accepted; right after an end at either node it is refused), and the confirmations for relatives
without a smartphone (SMS reply, service counter), with their bad inputs."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from launcher.client import FederationClient, Session
from launcher.people import Person, new_person
from tests.conftest import Federation
from tests.e2e.flows import bind, enrol, face_login, me, money_totals, notices, operator_post, wait_binding_state

pytestmark = pytest.mark.federation

TRANSFERS_PER_GIVER = 3  # YIBAO_TRANSFER_MAX_PER_DAY's default


def code_of(response: Any) -> str:
    return str(response.json()["error"]["code"])


async def pending_binding(client: FederationClient, giver: Person, giver_session: Session, relative: Person,
                          relative_session: Session, relation: str = "parent") -> str:
    """The giver asks; the request has reached the relative's node (as the relative sees it)."""
    await client.import_kinship([{"id_no_a": giver.id_no, "id_no_b": relative.id_no, "relation": relation}])
    created = await client.call(giver_session, "POST", "/v1/bindings", {
        "relative_id_no": relative.id_no, "relative_name": relative.name, "relation": relation})
    assert created.status_code == 201, created.text
    binding_id: str = created.json()["binding_id"]
    await wait_binding_state(client, relative_session, binding_id, "PENDING_CONSENT")
    return binding_id


async def test_confirm_then_send_at_once_fifty_times(client: FederationClient) -> None:
    """50 times in a row: the relative confirms by face, and the giver's transfer (or, every third time, the
    quota) goes in at once, at the giver's node in another province, with no refusal."""
    rounds = 50
    givers = [new_person("640100") for _ in range((rounds + TRANSFERS_PER_GIVER - 1) // TRANSFERS_PER_GIVER)]
    relatives = [new_person(("620100", "610100", "350200")[k % 3], employee=False) for k in range(rounds)]
    await enrol(client, *givers, *relatives)
    giver_sessions = [await face_login(client, giver) for giver in givers]
    for k, relative in enumerate(relatives):
        giver, giver_session = givers[k // TRANSFERS_PER_GIVER], giver_sessions[k // TRANSFERS_PER_GIVER]
        relative_session = await face_login(client, relative)
        assert (await client.call(relative_session, "POST", "/v1/wallet:open")).status_code == 201
        binding_id = await pending_binding(client, giver, giver_session, relative, relative_session)
        confirmed = await client.call(relative_session, "POST", f"/v1/bindings/{binding_id}:confirm")
        assert (confirmed.status_code, confirmed.json()["state"]) == (200, "ACTIVE"), confirmed.text
        sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": binding_id,
                                                                          "amount_fen": 100 + k},
                                 idempotency_key=uuid.uuid4().hex)
        assert sent.status_code == 202, f"round {k}: {sent.text}"
        if k % 3 == 0:
            quota = await client.call(giver_session, "PUT", f"/v1/bindings/{binding_id}/quota",
                                      {"annual_quota_fen": 1000}, idempotency_key=uuid.uuid4().hex)
            assert quota.status_code == 200, f"round {k}: {quota.text}"


@pytest.mark.parametrize("ended_by", ["relative", "giver"])
async def test_end_then_send_at_once_is_refused(client: FederationClient, federation: Federation,
                                                ended_by: str) -> None:
    """Ended at either node, the binding takes no transfer and no quota anywhere, at once; nothing moves."""
    giver, relative = new_person("640100"), new_person("620100", employee=False)
    await enrol(client, giver, relative)
    giver_session, relative_session = await face_login(client, giver), await face_login(client, relative)
    assert (await client.call(relative_session, "POST", "/v1/wallet:open")).status_code == 201
    pair = await bind(client, giver, giver_session, relative, relative_session)
    ender = relative_session if ended_by == "relative" else giver_session
    ended = await client.call(ender, "DELETE", f"/v1/bindings/{pair.binding_id}", idempotency_key=uuid.uuid4().hex)
    assert (ended.status_code, ended.json()["state"]) == (200, "ENDED"), ended.text
    before = (await me(client, giver_session), await money_totals(client, federation))
    sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": pair.binding_id,
                                                                      "amount_fen": 500},
                             idempotency_key=uuid.uuid4().hex)
    assert (sent.status_code, code_of(sent)) == (422, "BINDING_NOT_ACTIVE"), sent.text
    quota = await client.call(giver_session, "PUT", f"/v1/bindings/{pair.binding_id}/quota",
                              {"annual_quota_fen": 1000}, idempotency_key=uuid.uuid4().hex)
    assert (quota.status_code, code_of(quota)) == (422, "BINDING_NOT_ACTIVE"), quota.text
    after = (await me(client, giver_session), await money_totals(client, federation))
    assert after == before


# ------------------------------------------------------------------------------------------ SMS (point 1)

SMS_CODE = re.compile(r"回复“确认 (\d{6})”即可完成绑定$")


async def sms_code(client: FederationClient, relative_session: Session) -> str:
    """The code, from the binding request's notice to the relative (the only place it is shown)."""
    texts = await notices(client, relative_session)
    found = [m.group(1) for m in map(SMS_CODE.search, texts) if m]
    assert found, texts
    return found[-1]


async def sms_reply(client: FederationClient, federation: Federation, admdvs: str, from_phone: str, text: str,
                    token: str | None = None) -> httpx.Response:
    token = token or (federation.home / "sms_inbound_token").read_text().strip()
    return await client.http.post(f"{client.node_url(admdvs)}/v1/sms/inbound",
                                  json={"from_phone": from_phone, "text": text},
                                  headers={"authorization": f"Bearer {token}"})


async def state_at(client: FederationClient, session: Session, binding_id: str) -> dict[str, Any]:
    listed = (await client.call(session, "GET", "/v1/bindings")).json()
    found: dict[str, Any] = next(b for b in listed if b["binding_id"] == binding_id)
    return found


async def sms_family(client: FederationClient) -> tuple[Person, Session, Person, Session, str]:
    giver, relative = new_person("640100"), new_person("620100", employee=False)
    await enrol(client, giver, relative)
    giver_session, relative_session = await face_login(client, giver), await face_login(client, relative)
    assert (await client.call(relative_session, "POST", "/v1/wallet:open")).status_code == 201
    binding_id = await pending_binding(client, giver, giver_session, relative, relative_session)
    return giver, giver_session, relative, relative_session, binding_id


async def test_sms_confirmation_and_its_bad_input(client: FederationClient, federation: Federation) -> None:
    giver, giver_session, relative, relative_session, binding_id = await sms_family(client)
    code = await sms_code(client, relative_session)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    admdvs = relative.admdvs
    # Refused, each changing nothing: a wrong gateway token, a malformed delivery, an unknown phone, another
    # insured person's phone with the right code, a text that is no confirmation.
    bad_token = await sms_reply(client, federation, admdvs, relative.phone, f"确认 {code}", token="nope")
    assert (bad_token.status_code, code_of(bad_token)) == (401, "UNAUTHENTICATED")
    malformed = await client.http.post(f"{client.node_url(admdvs)}/v1/sms/inbound", json={"text": "确认"},
                                       headers={"authorization": "Bearer " + (
                                           federation.home / "sms_inbound_token").read_text().strip()})
    assert malformed.status_code == 422, malformed.text
    for phone, text, reason in ((("13900000000"), f"确认 {code}", "UNKNOWN_PHONE"),
                                (giver.phone, f"确认 {code}", "UNKNOWN_PHONE"),  # the giver is insured elsewhere
                                (relative.phone, "你好", "NOT_A_CONFIRMATION")):
        answer = await sms_reply(client, federation, admdvs, phone, text)
        assert answer.status_code == 200 and answer.json() == {"handled": False, "reason": reason}, answer.text
    # Four wrong codes are counted but do not void; the right code then confirms, recorded as by SMS.
    for _ in range(4):
        answer = await sms_reply(client, federation, admdvs, relative.phone, f"确认 {wrong}")
        assert answer.json() == {"handled": False, "reason": "WRONG_CODE"}, answer.text
    assert (await state_at(client, relative_session, binding_id))["state"] == "PENDING_CONSENT"
    answer = await sms_reply(client, federation, admdvs, relative.phone, f" 确认 {code} ")
    assert answer.json() == {"handled": True, "binding_id": binding_id, "state": "ACTIVE"}, answer.text
    seen = await state_at(client, relative_session, binding_id)
    assert (seen["state"], seen["confirmed_via"]) == ("ACTIVE", "sms")
    # Confirm-then-send holds for an SMS confirmation too.
    sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": binding_id, "amount_fen": 300},
                             idempotency_key=uuid.uuid4().hex)
    assert sent.status_code == 202, sent.text
    # The code again, for a binding now active: nothing to do.
    again = await sms_reply(client, federation, admdvs, relative.phone, f"确认 {code}")
    assert again.json() == {"handled": False, "reason": "NO_PENDING_BINDING"}, again.text


async def test_five_wrong_sms_codes_void_it_and_an_ended_binding_takes_none(
        client: FederationClient, federation: Federation) -> None:
    _, _, relative, relative_session, binding_id = await sms_family(client)
    code = await sms_code(client, relative_session)
    wrong = f"{(int(code) + 7) % 10**6:06d}"
    for _ in range(5):
        answer = await sms_reply(client, federation, relative.admdvs, relative.phone, f"确认 {wrong}")
        assert answer.json() == {"handled": False, "reason": "WRONG_CODE"}, answer.text
    voided = await sms_reply(client, federation, relative.admdvs, relative.phone, f"确认 {code}")
    assert voided.json() == {"handled": False, "reason": "NO_PENDING_BINDING"}, voided.text
    assert (await state_at(client, relative_session, binding_id))["state"] == "PENDING_CONSENT"
    assert any("确认码已失效" in text for text in await notices(client, relative_session))
    # The app still works after the codes are void.
    confirmed = await client.call(relative_session, "POST", f"/v1/bindings/{binding_id}:confirm")
    assert confirmed.json()["state"] == "ACTIVE", confirmed.text
    assert (await state_at(client, relative_session, binding_id))["confirmed_via"] == "face"

    # A code for a binding the giver ended (at the giver's node; the relative's node may not know yet).
    other_giver = new_person("610100")
    await enrol(client, other_giver)
    other_session = await face_login(client, other_giver)
    other_binding = await pending_binding(client, other_giver, other_session, relative, relative_session)
    other_code = await sms_code(client, relative_session)
    ended = await client.call(other_session, "DELETE", f"/v1/bindings/{other_binding}",
                              idempotency_key=uuid.uuid4().hex)
    assert ended.json()["state"] == "ENDED", ended.text
    late = await sms_reply(client, federation, relative.admdvs, relative.phone, f"确认 {other_code}")
    assert late.json()["handled"] is False and late.json()["reason"] in ("BINDING_NOT_PENDING",
                                                                         "NO_PENDING_BINDING"), late.text
    await wait_binding_state(client, relative_session, other_binding, "ENDED")


# ------------------------------------------------------------------------------------------ counter (point 2)


async def test_counter_confirmation_by_a_clerk_and_its_bad_input(client: FederationClient,
                                                                 federation: Federation) -> None:
    giver, giver_session, relative, relative_session, binding_id = await sms_family(client)
    clerk_id = f"c{uuid.uuid4().hex[:12]}"
    created = await operator_post(client, relative.admdvs, "/v1/admin/clerks", {"clerk_id": clerk_id,
                                                                                "name": "王窗口"})
    assert created.status_code == 201 and created.json()["clerk_id"] == clerk_id, created.text
    token = created.json()["clerk_token"]
    twice = await operator_post(client, relative.admdvs, "/v1/admin/clerks", {"clerk_id": clerk_id, "name": "王"})
    assert (twice.status_code, code_of(twice)) == (409, "CLERK_EXISTS")
    not_operator = await client.http.post(f"{client.node_url(relative.admdvs)}/v1/admin/clerks",
                                          json={"clerk_id": "x1", "name": "x"},
                                          headers={"authorization": f"Bearer {token}"})
    assert not_operator.status_code == 401

    async def at_counter(admdvs: str, target: str, body: dict[str, Any], bearer: str | None = token
                         ) -> httpx.Response:
        headers = {"idempotency-key": uuid.uuid4().hex}
        if bearer is not None:
            headers["authorization"] = f"Bearer {bearer}"
        return await client.http.post(f"{client.node_url(admdvs)}/v1/counter/bindings/{target}:confirm",
                                      json=body, headers=headers)

    right = {"relative_id_no": relative.id_no, "relative_name": relative.name}
    stranger = new_person("620100", employee=False)
    await enrol(client, stranger)
    before = await money_totals(client, federation)
    refusals = [
        (await at_counter(giver.admdvs, binding_id, right), 403, "WRONG_PROVINCE"),  # clerk at another node
        (await at_counter(relative.admdvs, binding_id, right, bearer=None), 401, "UNAUTHENTICATED"),
        (await at_counter(relative.admdvs, binding_id, right, bearer=client.operator_token), 401,
         "UNAUTHENTICATED"),
        (await at_counter(relative.admdvs, binding_id, {"relative_id_no": stranger.id_no,
                                                        "relative_name": stranger.name}), 404, "BINDING_NOT_FOUND"),
        (await at_counter(relative.admdvs, binding_id, {**right, "relative_name": stranger.name}), 404,
         "BINDING_NOT_FOUND"),
        (await at_counter(relative.admdvs, "Bnosuchbinding", right), 404, "BINDING_NOT_FOUND"),
        (await at_counter(relative.admdvs, binding_id, {**right, "relative_id_no": relative.id_no[:-1] + (
            "0" if relative.id_no[-1] != "0" else "1")}), 422, "INVALID_ID_NO"),
    ]
    for response, status, code in refusals:
        assert (response.status_code, code_of(response)) == (status, code), response.text
    assert (await state_at(client, relative_session, binding_id))["state"] == "PENDING_CONSENT"
    assert await money_totals(client, federation) == before

    confirmed = await at_counter(relative.admdvs, binding_id, right)
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "ACTIVE", confirmed.text
    seen = await state_at(client, relative_session, binding_id)
    assert (seen["confirmed_via"], seen["confirmed_by_clerk_id"]) == ("counter", clerk_id)
    sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": binding_id, "amount_fen": 200},
                             idempotency_key=uuid.uuid4().hex)
    assert sent.status_code == 202, sent.text
    ended = await client.call(giver_session, "DELETE", f"/v1/bindings/{binding_id}", idempotency_key=uuid.uuid4().hex)
    assert ended.json()["state"] == "ENDED"
    late = await at_counter(relative.admdvs, binding_id, right)
    assert (late.status_code, code_of(late)) == (422, "BINDING_NOT_PENDING"), late.text
