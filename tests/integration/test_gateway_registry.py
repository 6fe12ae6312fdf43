"""The gateway's in-memory registry (service_layer/context.py): sign-ins are cached, bounded, and read through
from the table when not cached; the periodic reload leaves them alone (the table only grows). An admin change
made through one replica reaches another replica's registry at its next refresh, and a refresh where nothing
changed reloads nothing. In process: the gateway's real app over a fake payer's node (tests/support/gateway.py),
on SQLite and on PostgreSQL; "another replica" is a second registry over the same tables."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from launcher.people import new_person
from launcher.pos_client import Item, PosClient
from services.pharmacy_gateway.service_layer import context
from tests.support.gateway import InProcessGateway

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片, drug
GLASSES = "DG0001"  # reading glasses: daily goods, which accounts never pay for


async def test_a_sign_in_no_longer_cached_is_read_from_the_table(gateway: InProcessGateway, till: PosClient) -> None:
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)
    gateway.ctx.registry.sign_ins.clear()  # forgotten (evicted, or this process started after the sign-in)
    await gateway.ctx.registry.load(gateway.ctx.db)  # the periodic reload does not bring sign-ins back
    assert gateway.ctx.registry.sign_ins == {}
    answer = await till.settle(payer, [Item(DRUG, 1, "10.00")])
    assert answer["infcode"] == 0, answer
    assert gateway.ctx.registry.sign_ins == {till.sign_no: till.fixmedins_code}


async def test_an_unknown_sign_no_is_refused(gateway: InProcessGateway, till: PosClient) -> None:
    account = gateway.enrol(new_person("640100", personal_account_fen=10_000))
    payer = await till.payer("02", account.person.id_no)
    till.sign_no = "20261202000000" + "0" * 16
    answer = await till.settle(payer, [Item(DRUG, 1, "10.00")])
    assert answer["infcode"] == -1 and "sign in first" in answer["err_msg"]


def test_the_sign_in_cache_keeps_the_newest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "SIGN_INS_CACHED", 2)
    registry = context.Registry()
    for number in range(3):
        registry.remember_sign_in(f"S{number}", "P1")
    assert list(registry.sign_ins) == ["S1", "S2"]


async def test_admin_changes_through_one_replica_reach_another_at_its_refresh(gateway: InProcessGateway,
                                                                             till: PosClient) -> None:
    other = context.Registry()  # another replica's registry over the same tables
    await other.load(gateway.ctx.db)
    old = other.by_code[till.fixmedins_code]
    assert other.by_paas_id[till.paas_id] == old

    # Nothing changed: the refresh reads the stamps and keeps what it holds.
    institutions, catalogue = other.by_paas_id, other.category_of
    await other.refresh(gateway.ctx.db)
    assert other.by_paas_id is institutions and other.category_of is catalogue

    # Registered again through this replica: the other drops the old credentials at its refresh, reading only
    # what changed (the same dictionaries, updated).
    again = await gateway.register(till.fixmedins_code, "成都康泰大药房", "510100")
    assert again.status_code == 200, again.text
    await other.refresh(gateway.ctx.db)
    assert till.paas_id not in other.by_paas_id and other.by_paas_id is institutions
    assert other.by_code[till.fixmedins_code].paas_id == again.json()["paas_id"]
    assert other.by_paas_id[again.json()["paas_id"]].fixmedins_code == till.fixmedins_code
    assert other.category_of is catalogue  # the catalogue's stamp did not move

    # A catalogue import through this replica: the other reloads its catalogues, not its institutions.
    institutions = other.by_paas_id
    imported = await gateway.http.post("/v1/admin/catalogue:import", json={"items": [
        {"med_list_codg": GLASSES, "name": "老花镜", "category": "daily_goods"}]},
        headers=gateway.operator_headers(idempotency_key=uuid.uuid4().hex))
    assert imported.status_code == 200, imported.text
    await other.refresh(gateway.ctx.db)
    assert other.category_of[GLASSES] == "daily_goods"
    assert other.by_paas_id is institutions


async def test_a_replica_that_loads_afresh_holds_what_the_incremental_refreshes_built(gateway: InProcessGateway,
                                                                                      till: PosClient) -> None:
    """What the rows stamped since give (one replica, refreshing) is what a full load gives (another, starting)."""
    refreshed = context.Registry()
    await refreshed.load(gateway.ctx.db)
    for number in range(3):  # new institutions, and the till's registered again twice
        code = till.fixmedins_code if number else f"H5101{number:07d}"
        answer = await gateway.register(code, "成都市第一人民医院", "510100", kind="hospital", hosp_lv="3")
        assert answer.status_code in (200, 201), answer.text
        await refreshed.refresh(gateway.ctx.db)
    fresh = context.Registry()
    await fresh.load(gateway.ctx.db)
    assert refreshed.by_paas_id == fresh.by_paas_id and refreshed.by_code == fresh.by_code
    assert refreshed.profiles == fresh.profiles and refreshed.profiles[till.fixmedins_code] == ("hospital", "3")


async def test_refreshes_in_one_process_run_one_at_a_time(gateway: InProcessGateway, till: PosClient,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The periodic refresh and an admin change's: one that read earlier never applies its rows over a later
    one's (they would bring back revoked credentials until the next refresh)."""
    registry = context.Registry()
    await registry.load(gateway.ctx.db)
    inside: list[int] = []
    overlapped: list[bool] = []
    load = context.Registry._load_institutions

    async def slow_load(self: context.Registry, view: Any, since: int | None) -> None:
        inside.append(1)
        overlapped.append(len(inside) > 1)
        await asyncio.sleep(0.05)  # another refresh would get in here
        await load(self, view, since)
        inside.pop()

    monkeypatch.setattr(context.Registry, "_load_institutions", slow_load)
    for _ in range(2):
        again = await gateway.register(till.fixmedins_code, "成都康泰大药房", "510100")
        assert again.status_code == 200, again.text
        await asyncio.gather(registry.refresh(gateway.ctx.db), registry.refresh(gateway.ctx.db))
    assert overlapped and not any(overlapped)
    assert registry.by_code[till.fixmedins_code].paas_id == again.json()["paas_id"]
