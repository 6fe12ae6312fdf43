"""What the POS end-to-end tests share (tests/e2e/test_pos_*.py): the catalogue's items, registered tills, enrolled
payers, balances as the citizen API shows them, and what the hub's clearing recorded for a settlement.

`obligations` reads the hub's database: the operator API shows clearing only as net positions per province
(GET /v1/ops/settlement-windows), never one settlement's obligations, and adding a read to the external contract
(API.md) is not a test's business. Fixtures: tests/e2e/conftest.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from launcher.client import FederationClient, Session
from launcher.people import Person, new_person
from launcher.pos_client import Payer, PosClient
from launcher.state import StatePaths, read_pid_file
from shared.clock import SHANGHAI
from shared.db import ReadView, open_database
from shared.settings import ServiceSettings
from tests.conftest import Federation
from tests.e2e.flows import (
    enrol,
    face_login,
    me,
    wait_binding_state,
    wait_transfer,
)

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片 (blood pressure), drug
DEVICE = "C14010100001"  # 医用外科口罩, device
TISSUES = "RY0000000001"  # 面巾纸, daily goods: always cash
UNKNOWN = "ZZ9999999999"  # not in the catalogue: cash
PROVINCE_TIMEOUT_S = 3.0  # GatewaySettings.province_call_timeout_s (default)


def institution_code(prefix: str) -> str:
    return prefix + f"{random.randrange(10**7):07d}"


@dataclass
class Tills:
    chengdu: PosClient  # 510100 成都: every Ningxia, Gansu or Shaanxi payer is cross-province here
    chengdu_other: PosClient  # another Chengdu pharmacy
    yinchuan: PosClient  # 640100 银川: same province as Ningxia payers


async def new_till(client: FederationClient, name: str, admdvs: str) -> PosClient:
    registration = await client.register_institution(institution_code("P" + admdvs[:4]), name, admdvs)
    till = PosClient.registered(client.gateway_url(), registration)
    await till.sign_in()
    return till


async def enrolled(client: FederationClient, pooling: str, *, pa_fen: int = 100_000, employee: bool = True,
                    card_no: str | None = None) -> Person:
    person = new_person(pooling, employee=employee, personal_account_fen=pa_fen)
    body = person.import_body() | ({"card_no": card_no} if card_no else {})
    result = await client.import_persons(person.admdvs, [body])
    assert result["rejected"] == [], result
    return person


async def balances(client: FederationClient, session: Session) -> tuple[int | None, int | None]:
    mine = await me(client, session)
    return mine["personal_account_fen"], (mine["wallet"] or {}).get("balance_fen")


def settlement_day() -> date:
    """Settlement days are Asia/Shanghai dates (3201)."""
    return datetime.now(SHANGHAI).date()


async def obligations(federation: Federation, setl_id: str, expected: int = 1,
                       timeout_s: float = 15) -> list[tuple[str, str, str, int]]:
    """(kind, debtor, creditor, amount_fen) the hub recorded for a settlement, read from the hub's database
    (the operator views of clearing are another issue's), waiting until `expected` are there."""
    database = await open_database(ServiceSettings(home=federation.home), "hub")
    table = sa.table("clearing_obligations", sa.column("id"), sa.column("kind"), sa.column("ref"),
                     sa.column("debtor_admdvs"), sa.column("creditor_admdvs"), sa.column("amount_fen"))
    deadline = time.monotonic() + timeout_s
    rows: list[tuple[str, str, str, int]] = []
    try:
        while time.monotonic() < deadline:
            async with ReadView(database) as view:
                found = await view.execute(sa.select(table.c.kind, table.c.debtor_admdvs, table.c.creditor_admdvs,
                                                     table.c.amount_fen)
                                           .where(table.c.ref.like(f"POS:{setl_id}:%")).order_by(table.c.id))
                rows = [(str(row.kind), str(row.debtor_admdvs), str(row.creditor_admdvs), int(row.amount_fen))
                        for row in found]
            if len(rows) >= expected:
                return rows
            await asyncio.sleep(0.1)
    finally:
        await database.dispose()
    return rows


@contextlib.contextmanager
def frozen(federation: Federation, service: str) -> Iterator[None]:
    """SIGSTOP one service of our test federation (a province that accepts connections but never answers),
    SIGCONT on the way out."""
    record = read_pid_file(StatePaths(federation.home.resolve()).pid_file(service))
    assert record is not None
    os.kill(record.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(record.pid, signal.SIGCONT)


async def family_with_wallet(client: FederationClient, relative_pooling: str, *, relative_pa_fen: int,
                              wallet_fen: int, relative_employee: bool = True,
                              card_no: str | None = None) -> tuple[Person, Session]:
    """A relative whose wallet a child (employee, Ningxia) filled by a transfer."""
    giver = new_person("640100", personal_account_fen=1_000_000)
    relative = new_person(relative_pooling, employee=relative_employee, personal_account_fen=relative_pa_fen)
    await enrol(client, giver)
    body = relative.import_body() | ({"card_no": card_no} if card_no else {})
    assert (await client.import_persons(relative.admdvs, [body]))["rejected"] == []
    await client.import_kinship([{"id_no_a": giver.id_no, "id_no_b": relative.id_no, "relation": "parent"}])
    giver_session, relative_session = await face_login(client, giver), await face_login(client, relative)
    assert (await client.call(relative_session, "POST", "/v1/wallet:open")).status_code == 201
    created = await client.call(giver_session, "POST", "/v1/bindings", {
        "relative_id_no": relative.id_no, "relative_name": relative.name, "relation": "parent"})
    binding_id = created.json()["binding_id"]
    assert (await client.call(relative_session, "POST", f"/v1/bindings/{binding_id}:confirm")).status_code == 200
    await wait_binding_state(client, giver_session, binding_id, "ACTIVE")
    sent = await client.call(giver_session, "POST", "/v1/transfers", {"binding_id": binding_id,
                                                                      "amount_fen": wallet_fen},
                             idempotency_key=uuid.uuid4().hex)
    assert sent.status_code == 202, sent.text
    assert (await wait_transfer(client, giver_session, sent.json()["transfer_id"]))["state"] == "CREDITED"
    return relative, relative_session


async def quota_used_is(received: Callable[[], Awaitable[list[dict[str, Any]]]], *, annual_fen: int,
                         used_fen: int) -> bool:
    quotas = await received()
    return len(quotas) == 1 and (quotas[0]["annual_quota_fen"], quotas[0]["used_fen"]) == (annual_fen, used_fen)


async def at_ningxia_node(client: FederationClient, federation: Federation, action: str,
                           body: dict[str, Any]) -> httpx.Response:
    """A call of the Ningxia node's internal POS API, as the gateway makes it."""
    return await client.http.post(f"{client.node_url('640000')}/internal/v1/pos/payments:{action}", json=body,
                                  headers={"authorization": f"Bearer {federation.internal_token}"})


async def settle_at_ningxia_node(client: FederationClient, federation: Federation, till: PosClient, payer: Payer,
                                  msgid: str) -> httpx.Response:
    """10 yuan from the payer's personal account, asked of the node straight, past the gateway."""
    return await at_ningxia_node(client, federation, "settle", {
        "msgid": msgid, "psn_no": payer.psn_no, "insutype": "310", "fixmedins_code": till.fixmedins_code,
        "medfee_fen": 1000, "eligible_fen": 1000, "use_accounts": True})


async def hub_shows_cancelled(client: FederationClient, federation: Federation, id_no: str, setl_id: str) -> bool:
    """Whether the hub's supervision lists the settlement as cancelled (GET /v1/ops/persons/{id_no}/activity)."""
    answer = await client.http.get(f"{client.hub_url()}/v1/ops/persons/{id_no}/activity", params={"reviewer": "e2e"},
                                   headers={"authorization": f"Bearer {federation.operator_token}"})
    assert answer.status_code == 200, answer.text
    return any(s["setl_id"] == setl_id and s["cancelled"] for s in answer.json()["settlements"])

