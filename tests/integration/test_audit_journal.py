"""The audit journal (shared/audit.py; issue 12, API.md "Audit chain") in process, on SQLite and on PostgreSQL:
every state of a quota is journaled at both nodes in the transaction making it, matching the stored rows; on
PostgreSQL transactions journaling at once do not wait for each other (entries are sealed into the chain after
their commits, by one sealer per instance), the chain stays gap-free and verifies, and what is still pending
when verification runs counts as journaled. PostgreSQL tests need YIBAO_TEST_POSTGRES_URL (skipped without)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from services.province_node.domain.quota import JOURNAL_KIND
from services.province_node.service_layer import quotas
from services.province_node.service_layer.context import NodeContext
from shared import audit
from shared.db import Database, ReadView, UnitOfWork, open_database
from tests.support.inprocess import SOURCE, InProcessFederation
from tests.support.stories import Person, active_binding, end_binding, family

WAIT_S = 10.0


async def _set_quota(fed: InProcessFederation, giver: Person, binding_id: str, annual_quota_fen: int) -> None:
    ctx = fed.node(giver.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        await quotas.set_quota(ctx, uow, giver.claims(fed.clock.now()), binding_id, annual_quota_fen)
        await uow.commit()
    await fed.pump()


async def _use(ctx: NodeContext, binding_id: str, amount_fen: int) -> None:
    async with UnitOfWork(ctx.db) as uow:
        if amount_fen > 0:
            await quotas.spend_quota(ctx, uow, binding_id, amount_fen, "SETL-A")
        else:
            await quotas.return_quota_spend(ctx, uow, binding_id, -amount_fen, "SETL-A")
        await uow.commit()


async def _quota_entries(db: Database, binding_id: str) -> list[dict[str, Any]]:
    await audit.seal(db)
    async with ReadView(db) as view:
        rows = await audit.journal_rows(view)
    bodies = [json.loads(row.body) for row in rows]
    return [body["data"] for body in bodies if body["kind"] == JOURNAL_KIND and body["ref"] == binding_id]


async def _row(db: Database, table: sa.Table, binding_id: str) -> Any:
    async with ReadView(db) as view:
        return (await view.execute(sa.select(table).where(table.c.binding_id == binding_id))).one()


async def _verifies(db: Database) -> audit.Verdict:
    await audit.seal(db)
    async with ReadView(db) as view:
        head = await audit.head(view)
    return await audit.verify(db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)


async def _every_quota_state_is_journaled(fed: InProcessFederation) -> None:
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    giver_db, mother_ctx = fed.node(giver.admdvs).db, fed.node(mother.admdvs)
    await _set_quota(fed, giver, binding_id, 60_000)
    await _use(mother_ctx, binding_id, 20_000)
    await _use(mother_ctx, binding_id, -5_000)
    await fed.pump()
    await _set_quota(fed, giver, binding_id, 30_000)  # lowered: the mirror shrinks, then the reserve is released
    await end_binding(fed, giver, binding_id)
    await fed.pump()

    given = await _quota_entries(giver_db, binding_id)
    assert [e["event"] for e in given if e["event"] != "mirrored"] == ["set", "set", "ending"], given
    assert given[0] | {"reserved_fen": 0} == {
        "side": "giver", "event": "set", "year": given[0]["year"], "state": "OPEN", "annual_quota_fen": 60_000,
        "version": 1, "mirror_quota_fen": 0, "mirror_used_fen": 0, "reserved_fen": 0}
    assert given[0]["reserved_fen"] == 60_000
    released = [e["released_fen"] for e in given if e["event"] == "mirrored"]
    assert sum(released) == 60_000 - 15_000, given  # what was not spent went back, each release journaled
    assert given[-1]["state"] == "CLOSED" and given[-1]["event"] == "mirrored"

    received = await _quota_entries(mother_ctx.db, binding_id)
    assert [e["event"] for e in received] == ["set", "spent", "returned", "set", "ended", "set"], received
    spent, returned = received[1], received[2]
    assert (spent["amount_fen"], spent["used_fen"], spent["use"], spent["payment_ref"]) == (
        20_000, 20_000, "pharmacy", "SETL-A")
    assert (returned["amount_fen"], returned["used_fen"]) == (5_000, 15_000)
    assert (received[3]["annual_quota_fen"], received[3]["state"]) == (30_000, "OPEN")
    assert (received[4]["annual_quota_fen"], received[4]["state"]) == (15_000, "CLOSED")

    # The last journaled state of each side is what the node stores.
    grant = await _row(giver_db, quotas.GRANTS, binding_id)
    assert {k: given[-1][k] for k in ("state", "annual_quota_fen", "version", "mirror_quota_fen",
                                      "mirror_used_fen")} == {
        "state": grant.state, "annual_quota_fen": grant.annual_quota_fen, "version": grant.version,
        "mirror_quota_fen": grant.mirror_quota_fen, "mirror_used_fen": grant.mirror_used_fen}
    mirror = await _row(mother_ctx.db, quotas.MIRRORS, binding_id)
    assert {k: received[-1][k] for k in ("state", "annual_quota_fen", "used_fen", "version")} == {
        "state": "CLOSED" if mirror.closed else "OPEN", "annual_quota_fen": mirror.annual_quota_fen,
        "used_fen": mirror.used_fen, "version": mirror.version}
    for db in (giver_db, mother_ctx.db):
        verdict = await _verifies(db)
        assert verdict.ok, verdict


async def test_every_quota_state_is_journaled_on_sqlite(fed: InProcessFederation) -> None:
    await _every_quota_state_is_journaled(fed)


async def test_every_quota_state_is_journaled_on_postgresql(pg_fed: InProcessFederation) -> None:
    await _every_quota_state_is_journaled(pg_fed)


# ------------------------------------------------------------------------------------ PostgreSQL: no queue


async def _journal_seqs_and_refs(db: Database) -> list[tuple[int, str]]:
    async with ReadView(db) as view:
        return [(int(row.seq), json.loads(row.body)["ref"]) for row in await audit.journal_rows(view)]


async def test_two_transactions_journaling_at_once_do_not_wait_for_each_other(pg_fed: InProcessFederation) -> None:
    """The first transaction has written its entries and holds its commit open; a second one (another replica)
    journals and commits meanwhile. Sealed in commit order: the second's entry first, the first's after its
    commit, one gap-free chain that verifies."""
    node = pg_fed.node(SOURCE)
    replica = await open_database(node.settings, node.settings.db_instance)
    written, finish = asyncio.Event(), asyncio.Event()

    async def held_open() -> None:
        async with UnitOfWork(node.db) as uow:
            await audit.append(uow, "test", "first", {"n": 1})

            async def wait_before_committing() -> None:  # runs after the journal's own before-commit work
                written.set()
                await finish.wait()

            uow.before_commit(wait_before_committing)
            await uow.commit()

    async def quick() -> None:
        async with UnitOfWork(replica) as uow:
            await audit.append(uow, "test", "second", {"n": 2})
            await uow.commit()

    try:
        first = asyncio.create_task(held_open())
        await asyncio.wait_for(written.wait(), WAIT_S)
        await asyncio.wait_for(quick(), WAIT_S)  # it would wait for `first` if appends took a lock to commit
        assert await audit.seal(replica) == 1
        finish.set()
        await asyncio.wait_for(first, WAIT_S)
        assert await audit.seal(node.db) == 1
        entries = await _journal_seqs_and_refs(node.db)
        assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
        assert [ref for _, ref in entries][-2:] == ["second", "first"]
        verdict = await _verifies(node.db)
        assert verdict.ok and verdict.entries_checked == len(entries), verdict
    finally:
        finish.set()
        await replica.dispose()


async def test_replicas_journaling_at_once_with_a_sealer_keep_one_chain(pg_fed: InProcessFederation) -> None:
    """Three replicas post and journal at once while each runs its sealer (one seals at a time); the chain ends
    gap-free, holding every entry once, and replays to the stored balances."""
    node = pg_fed.node(SOURCE)
    replicas = [node.db] + [await open_database(node.settings, node.settings.db_instance) for _ in range(2)]
    sealers = [audit.Sealer(db, poll_interval_s=0.05) for db in replicas]
    tasks = [asyncio.create_task(sealer.run()) for sealer in sealers]
    now = pg_fed.clock.now()
    try:
        async with UnitOfWork(node.db) as uow:
            for n in range(6):
                await ledger_repo.open_account(uow, ledger.personal_account(f"S{n}"), "PA", f"S{n}", now)
            await uow.commit()

        async def credits(db: Database, replica: int) -> None:
            for n in range(20):
                async with UnitOfWork(db) as uow:
                    await ledger_repo.post(uow, ledger.move("MONTHLY_CREDIT", f"S{replica}-{n}", ledger.FUNDING,
                                                            ledger.personal_account(f"S{(n + replica) % 6}"), 100),
                                           now)
                    await audit.append(uow, "test", f"T{replica}-{n}", {"replica": replica})
                    await uow.commit()

        await asyncio.gather(*(credits(db, number) for number, db in enumerate(replicas)))

        async def pending_left() -> int:
            async with ReadView(node.db) as view:
                return int((await view.execute(sa.select(sa.func.count()).select_from(audit.PENDING))).scalar_one())

        deadline = asyncio.get_running_loop().time() + WAIT_S
        while await pending_left():
            assert asyncio.get_running_loop().time() < deadline, "the sealers left entries pending"
            await asyncio.sleep(0.05)
        entries = await _journal_seqs_and_refs(node.db)
        assert [seq for seq, _ in entries] == list(range(1, len(entries) + 1))
        refs = [ref for _, ref in entries if ref.startswith(("S", "T")) and "-" in ref]  # postings' and appends'
        assert sorted(refs) == sorted(f"{kind}{r}-{n}" for kind in "ST" for r in range(3) for n in range(20))
        assert sum(sealer.sealed_total for sealer in sealers) >= 120
        verdict = await _verifies(node.db)
        assert verdict.ok, verdict
    finally:
        for sealer in sealers:
            sealer.stop()
        await asyncio.gather(*tasks)
        for db in replicas[1:]:
            await db.dispose()


async def test_entries_still_pending_count_as_journaled_and_an_edited_one_is_caught(
        pg_fed: InProcessFederation) -> None:
    """Verification while another replica holds the sealer's lock: the postings still pending are replayed
    with the chain, so the ledger verifies; a pending posting edited behind the service's back does not."""
    node = pg_fed.node(SOURCE)
    other = await open_database(node.settings, node.settings.db_instance)
    now = pg_fed.clock.now()
    account = ledger.personal_account("P1")
    try:
        async with UnitOfWork(node.db) as uow:
            await ledger_repo.open_account(uow, account, "PA", "P1", now)
            await uow.commit()
        await audit.seal(node.db)
        async with UnitOfWork(node.db) as uow:
            await ledger_repo.post(uow, ledger.move("MONTHLY_CREDIT", "P1-1", ledger.FUNDING, account, 700), now)
            await uow.commit()
        async with UnitOfWork(other) as sealing:
            assert await sealing.lead(audit.SEAL_JOB)  # another replica is sealing (and has not got there yet)
            async with ReadView(node.db) as view:
                head = await audit.head(view)
            verdict = await audit.verify(node.db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)
            assert verdict.ok and verdict.entries_checked == head.entries, verdict
            async with UnitOfWork(node.db) as uow:
                await uow.execute(sa.update(audit.PENDING).values(
                    data=sa.func.replace(audit.PENDING.c.data, "700", "701")))
                await uow.commit()
            tampered = await audit.verify(node.db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)
            assert (tampered.ok, tampered.first_bad_seq) == (False, head.head_seq + 1), tampered
    finally:
        await other.dispose()
