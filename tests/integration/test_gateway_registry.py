"""The gateway's in-memory registry (service_layer/context.py): sign-ins are cached, bounded, and read through
from the table when not cached; the periodic reload leaves them alone (the table only grows). In process: the
gateway's real app over a fake payer's node (tests/support/gateway.py), on SQLite."""

from __future__ import annotations

import pytest

from launcher.people import new_person
from launcher.pos_client import Item, PosClient
from services.pharmacy_gateway.service_layer import context
from tests.support.gateway import InProcessGateway

DRUG = "XC08CAA001A001"  # 苯磺酸氨氯地平片, drug


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
