"""Supervision with replicas on PostgreSQL (issue 12; DESIGN.md "Replicas"): two hub replicas deciding one held
transfer at once decide it once; replicas appending to one instance's audit journal at once keep one valid
chain. Needs YIBAO_TEST_POSTGRES_URL (skipped without it, like tests/integration/test_replica_races.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from services.national_hub.service_layer import holds
from services.national_hub.service_layer.context import HubContext
from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from shared import audit
from shared.db import Database, ReadView, UnitOfWork, open_database
from shared.errors import ApiError
from tests.integration.test_supervision_holds import AMOUNT_FEN, held_transfer, hub_row
from tests.support.inprocess import DESTINATION, SOURCE, InProcessFederation
from tests.support.stories import GIVER_PA_FEN, assert_money_conserved, balance_fen, transfer_out_state


@pytest.fixture
async def pg_ops(pg_fed: InProcessFederation) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=pg_fed.hub_app), base_url="http://hub") as client:
        yield client


async def decide(ctx: HubContext, alert_id: str, decision: str) -> object:
    try:
        async with UnitOfWork(ctx.db) as uow:
            answer = await holds.resolve(ctx, uow, alert_id, holds.Decision(decision, decision))
            await uow.commit()
        return answer
    except ApiError as refused:
        return refused.code


async def test_two_hub_replicas_deciding_one_hold_decide_it_once(pg_fed: InProcessFederation,
                                                                  pg_ops: httpx.AsyncClient) -> None:
    giver, mother, transfer_id, alert_id = await held_transfer(pg_fed, pg_ops)
    other_db = await open_database(pg_fed.hub.settings, "hub")
    try:
        other = dataclasses.replace(pg_fed.hub, db=other_db)
        answers = await asyncio.gather(decide(pg_fed.hub, alert_id, "release"), decide(other, alert_id, "reject"))
    finally:
        await other_db.dispose()
    winners = [a for a in answers if isinstance(a, dict)]
    assert len(winners) == 1 and "ALERT_ALREADY_RESOLVED" in answers, answers
    decision = winners[0]["decision"]
    await pg_fed.pump(twice=True)
    wallet = await balance_fen(pg_fed, DESTINATION, ledger.wallet_account(mother.psn_no))
    if decision == "release":
        assert (await hub_row(pg_fed, transfer_id)).state == "CREDITED" and wallet == AMOUNT_FEN
        assert await transfer_out_state(pg_fed, giver, transfer_id) == "CREDITED"
    else:
        assert (await hub_row(pg_fed, transfer_id)).state == "REFUNDED" and wallet == 0
        assert await balance_fen(pg_fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN
    await assert_money_conserved(pg_fed, GIVER_PA_FEN)


async def test_replicas_appending_at_once_keep_one_chain(pg_fed: InProcessFederation) -> None:
    node = pg_fed.node(SOURCE)
    replicas = [node.db] + [await open_database(node.settings, node.settings.db_instance) for _ in range(2)]
    now = datetime.now(UTC)
    try:
        async with UnitOfWork(node.db) as uow:
            for n in range(6):
                await ledger_repo.open_account(uow, ledger.personal_account(f"R{n}"), "PA", f"R{n}", now)
            await uow.commit()

        async def credits(db: Database, replica: int) -> None:
            for n in range(15):
                async with UnitOfWork(db) as uow:
                    await ledger_repo.post(uow, ledger.move("MONTHLY_CREDIT", f"R{replica}-{n}", ledger.FUNDING,
                                                            ledger.personal_account(f"R{(n + replica) % 6}"), 100),
                                           now)
                    await audit.append(uow, "test", f"R{replica}-{n}", {"replica": replica})
                    await uow.commit()

        await asyncio.gather(*(credits(db, number) for number, db in enumerate(replicas)))
        await audit.seal(node.db)  # the entries wait in audit_pending for the instance's sealer (shared/audit.py)
        async with ReadView(node.db) as view:
            head = await audit.head(view)
            rows = await audit.journal_rows(view)
        assert [int(r.seq) for r in rows] == list(range(1, head.head_seq + 1)) and head.entries >= 90
        verdict = await audit.verify(node.db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)
        assert verdict.ok and verdict.entries_checked >= 90, verdict
    finally:
        for db in replicas[1:]:
            await db.dispose()
