"""System accounts are changed by delta rows, folded into their balances by a job (ledger_repo.py "Hot
accounts"): a posting never waits for another transaction holding a system account's row, every delta counts
exactly once whichever replica folds it and whatever commits meanwhile, and every reader of a balance (the
ledger's totals and checks, audit verification) sees rows plus deltas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from services.province_node.domain.errors import DomainError
from services.province_node.service_layer import housekeeping
from shared import audit
from shared.db import Database, ReadView, UnitOfWork
from tests.support.inprocess import SOURCE, InProcessFederation
from tests.support.replicas import Replicas, until_blocked_in_postgresql
from tests.support.stories import GIVER_PA_FEN, assert_money_conserved, balance_fen, family

# Long enough for a posting that waited on a row lock to be seen waiting; a free one takes milliseconds.
NOT_BLOCKED_WITHIN_S = 5.0


async def _move(db: Database, from_account: str, to_account: str, amount_fen: int, ref: str) -> None:
    async with UnitOfWork(db) as uow:
        await ledger_repo.post(uow, ledger.move("TEST_MOVE", ref, from_account, to_account, amount_fen),
                               datetime.now(UTC))
        await uow.commit()


async def _deltas(db: Database) -> list[tuple[str, int]]:
    async with ReadView(db) as view:
        rows = (await view.execute(sa.select(ledger_repo.DELTAS.c.account_id, ledger_repo.DELTAS.c.delta_fen)
                                   .order_by(ledger_repo.DELTAS.c.id))).all()
    return [(row.account_id, int(row.delta_fen)) for row in rows]


async def _row_balance(db: Database, account_id: str) -> int:
    async with ReadView(db) as view:
        return int((await view.execute(sa.select(ledger_repo.ACCOUNTS.c.balance_fen).where(
            ledger_repo.ACCOUNTS.c.account_id == account_id))).scalar_one())


async def test_system_changes_are_rows_until_folded_and_every_reader_adds_them(any_fed: InProcessFederation) -> None:
    fed = any_fed
    giver, _ = await family(fed)
    node = fed.node(SOURCE)
    pa = ledger.personal_account(giver.psn_no)
    in_flight_before = await balance_fen(fed, SOURCE, ledger.IN_FLIGHT) or 0
    await _move(node.db, pa, ledger.IN_FLIGHT, 300, "t-1")
    await _move(node.db, pa, ledger.IN_FLIGHT, 200, "t-2")
    await _move(node.db, ledger.IN_FLIGHT, ledger.CLEARING, 100, "t-3")

    # Not folded yet: the row is as it was, and the deltas carry the changes (one row per account and commit).
    assert (ledger.IN_FLIGHT, 300) in await _deltas(node.db)
    assert await balance_fen(fed, SOURCE, ledger.IN_FLIGHT) == in_flight_before + 400
    assert await balance_fen(fed, SOURCE, pa) == GIVER_PA_FEN - 500
    async with ReadView(node.db) as view:
        totals = await ledger_repo.totals_by_kind(view)
        assert await ledger_repo.journal_is_balanced(view)
    assert totals[ledger.IN_FLIGHT] == in_flight_before + 400 and sum(totals.values()) == 0
    async with ReadView(node.db) as view:
        head = await audit.head(view)
    assert (await audit.verify(node.db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)).ok

    await housekeeping.fold_system_balances(node)
    assert await _deltas(node.db) == []
    assert await _row_balance(node.db, ledger.IN_FLIGHT) == in_flight_before + 400
    assert await balance_fen(fed, SOURCE, ledger.IN_FLIGHT) == in_flight_before + 400
    async with ReadView(node.db) as view:
        assert await ledger_repo.totals_by_kind(view) == totals
        assert await ledger_repo.journal_is_balanced(view)
    assert (await audit.verify(node.db, {head.head_seq: head.head_hash}, ledger_repo.AUDITED_LEDGER)).ok
    await housekeeping.fold_system_balances(node)  # nothing left: a no-op
    assert await _row_balance(node.db, ledger.IN_FLIGHT) == in_flight_before + 400

    await _move(node.db, ledger.IN_FLIGHT, pa, 400, "t-4")
    await _move(node.db, ledger.CLEARING, pa, 100, "t-5")
    await housekeeping.fold_system_balances(node)
    await assert_money_conserved(fed, GIVER_PA_FEN)


async def test_a_posting_does_not_wait_for_a_transaction_holding_a_system_account(replicas: Replicas) -> None:
    """Before: every accept updated SYS:IN_FLIGHT's row and waited for the previous accept's commit (and so
    here for the open fold, which holds that row's lock until it commits)."""
    fed = replicas.fed
    giver, _ = await family(fed)
    pa = ledger.personal_account(giver.psn_no)
    first = fed.node(SOURCE)
    second = await replicas.node(SOURCE)
    await housekeeping.fold_system_balances(first)  # what the import left (its funding)
    await _move(first.db, pa, ledger.IN_FLIGHT, 1_000, "before-fold")
    async with UnitOfWork(first.db) as holding:
        assert await ledger_repo.fold_system_deltas(holding) == 1  # IN_FLIGHT's row is locked from here on
        await asyncio.wait_for(_move(second.db, pa, ledger.IN_FLIGHT, 700, "meanwhile"), NOT_BLOCKED_WITHIN_S)
        await holding.commit()
    assert await _deltas(first.db) == [(ledger.IN_FLIGHT, 700)]
    assert await balance_fen(fed, SOURCE, ledger.IN_FLIGHT) == 1_700


async def test_two_replicas_folding_at_once_count_every_delta_once(replicas: Replicas) -> None:
    fed = replicas.fed
    giver, _ = await family(fed)
    pa = ledger.personal_account(giver.psn_no)
    first = fed.node(SOURCE)
    second = await replicas.node(SOURCE)
    await housekeeping.fold_system_balances(first)
    for index in range(5):
        await _move(first.db, pa, ledger.IN_FLIGHT, 100 + index, f"m-{index}")
    async with UnitOfWork(first.db) as folding:
        assert await ledger_repo.fold_system_deltas(folding) == 5
        # The other replica's fold waits on the rows this one deleted; once it commits, they are gone for it.
        other = asyncio.ensure_future(_fold_once(second.db))
        await until_blocked_in_postgresql(1, other)
        assert not other.done()
        await _move(second.db, pa, ledger.IN_FLIGHT, 1_000, "during")  # committed while both fold
        await folding.commit()
    moved_by_other = await other
    assert moved_by_other in (0, 1)  # the delta committed meanwhile, if its snapshot saw it
    await housekeeping.fold_system_balances(first)
    assert await _deltas(first.db) == []
    assert await _row_balance(first.db, ledger.IN_FLIGHT) == sum(100 + i for i in range(5)) + 1_000
    assert await balance_fen(fed, SOURCE, pa) == GIVER_PA_FEN - sum(100 + i for i in range(5)) - 1_000


async def _fold_once(db: Database) -> int:
    async with UnitOfWork(db) as uow:
        moved = await ledger_repo.fold_system_deltas(uow)
        await uow.commit()
    return moved


async def test_a_posting_its_citizen_account_cannot_cover_leaves_no_trace(any_fed: InProcessFederation) -> None:
    """One citizen leg is moved and entered in one statement on PostgreSQL (ledger_repo._NEW_ENTRY_IF_MOVED):
    refused, nothing of it stays; done, the account's row changes in its balance alone."""
    fed = any_fed
    giver, _ = await family(fed)
    node = fed.node(SOURCE)
    pa = ledger.personal_account(giver.psn_no)
    accounts, entries = ledger_repo.ACCOUNTS, ledger_repo.ENTRIES

    async def row_of_pa() -> tuple[object, ...]:
        async with ReadView(node.db) as view:
            return tuple((await view.execute(sa.select(accounts).where(accounts.c.account_id == pa))).one())

    async def entries_of(ref: str) -> int:
        async with ReadView(node.db) as view:
            return int((await view.execute(sa.select(sa.func.count()).select_from(entries).where(
                entries.c.ref == ref))).scalar_one())

    before, deltas_before = await row_of_pa(), await _deltas(node.db)
    with pytest.raises(DomainError) as refused:
        await _move(node.db, pa, ledger.IN_FLIGHT, GIVER_PA_FEN + 1, "too-much")
    assert refused.value.code == "INSUFFICIENT_FUNDS"
    assert await row_of_pa() == before
    assert await entries_of("too-much") == 0 and await _deltas(node.db) == deltas_before

    await _move(node.db, pa, ledger.IN_FLIGHT, 700, "fits")
    after = await row_of_pa()
    changed = {column.key for column, old, new in zip(accounts.columns, before, after, strict=True) if old != new}
    assert changed == {"balance_fen"} and await balance_fen(fed, SOURCE, pa) == GIVER_PA_FEN - 700
    assert await entries_of("fits") == 1
    async with ReadView(node.db) as view:
        assert await ledger_repo.journal_is_balanced(view)
