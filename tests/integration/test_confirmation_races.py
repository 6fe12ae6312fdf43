"""Issue 13's counters under concurrency on PostgreSQL (the `pg_fed` fixture; skipped without
YIBAO_TEST_POSTGRES_URL): sign-in failures sent at once are each counted (no lost update between the two
subjects' rows, first failure included), and wrong SMS codes sent at once void the code at exactly the fifth."""

from __future__ import annotations

import asyncio
import re

import httpx
import sqlalchemy as sa

from services.national_hub.service_layer.sign_in_throttle import THROTTLE
from services.province_node.service_layer import sms_confirmation
from services.province_node.service_layer.bindings import list_notifications
from services.province_node.service_layer.sms_confirmation import CODES
from shared.db import ReadView, UnitOfWork
from tests.support.inprocess import DESTINATION, InProcessFederation
from tests.support.stories import create_binding, family


async def test_failed_sign_ins_at_once_are_all_counted(pg_fed: InProcessFederation) -> None:
    giver, _ = await family(pg_fed)
    transport = httpx.ASGITransport(app=pg_fed.hub_app, client=("198.51.100.77", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        answers = await asyncio.gather(*[client.post("/v1/identity/sessions", json={
            "id_no": giver.id_no, "name": giver.name, "method": "password", "password": "wrong"})
            for _ in range(4)])
        assert [answer.status_code for answer in answers] == [401] * 4
        async with ReadView(pg_fed.hub.db) as view:
            counts = {row.subject.split(":")[0]: row.failures for row in await view.execute(sa.select(THROTTLE))}
        assert counts == {"id": 4, "addr": 4}
        fifth = await client.post("/v1/identity/sessions", json={
            "id_no": giver.id_no, "name": giver.name, "method": "password", "password": "wrong"})
        assert fifth.status_code == 401
        blocked = await client.post("/v1/identity/sessions", json={
            "id_no": giver.id_no, "name": giver.name, "method": "password", "password": "secret-pw"})
        assert blocked.status_code == 429


async def test_wrong_sms_codes_at_once_void_at_the_fifth(pg_fed: InProcessFederation) -> None:
    giver, mother = await family(pg_fed)
    binding_id = await create_binding(pg_fed, giver, mother, "parent")
    await pg_fed.pump()  # the request reaches her node: her code is issued
    ctx = pg_fed.node(DESTINATION)

    async with ReadView(ctx.db) as view:
        texts = [notice["text"] for notice in await list_notifications(view, mother.psn_no)]
    code = next(match.group(1) for match in map(re.compile(r"确认 (\d{6})").search, texts) if match)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    async def wrong_reply() -> None:
        decided = await sms_confirmation.plan(ctx, "13800138000", f"确认 {wrong}")
        async with UnitOfWork(ctx.db) as uow:
            await sms_confirmation.handle(ctx, uow, decided)
            await uow.commit()

    async with ReadView(ctx.db) as view:
        assert (await view.execute(sa.select(CODES.c.state).where(CODES.c.binding_id == binding_id))).scalar() \
            == "OPEN"
    await asyncio.gather(*[wrong_reply() for _ in range(4)])
    async with ReadView(ctx.db) as view:
        row = (await view.execute(sa.select(CODES).where(CODES.c.binding_id == binding_id))).one()
    assert (row.state, row.wrong_codes) == ("OPEN", 4)
    await asyncio.gather(*[wrong_reply() for _ in range(3)])
    async with ReadView(ctx.db) as view:
        row = (await view.execute(sa.select(CODES).where(CODES.c.binding_id == binding_id))).one()
    assert (row.state, row.wrong_codes) == ("VOID", 5)
