"""Applies postings to the node's database. The guard `balance + delta >= 0` is in the UPDATE itself, so no
citizen account can go negative even if a use case forgot to check first.

System accounts (SYS:CLEARING, SYS:IN_FLIGHT, ...) take part in nearly every posting, so their rows are the
hottest in the database: on PostgreSQL every transaction that updates one holds its row lock until it
commits, and all replicas queue behind it. Their balance changes are therefore summed over the transaction
and applied as its last statements (one UPDATE per system account, in id order, so two transactions cannot
deadlock on them), which holds those locks for one round trip and the commit only, and turns a consumer
batch's hundreds of updates into a few. The ledger lines are written at once as before; nothing reads a
system balance inside the transaction that changes it (`balance` adds what is pending, to be sure)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from services.province_node.adapters.tables import Account, LedgerEntry, LedgerLine
from services.province_node.domain.errors import DomainError
from services.province_node.domain.ledger import SYSTEM_ACCOUNTS, Posting, may_go_negative
from shared import audit
from shared.db import Prepared, PreparedIn, ReadView, UnitOfWork, for_update
from shared.tables import table

ACCOUNTS = table(Account)
ENTRIES = table(LedgerEntry)
LINES = table(LedgerLine)
# What audit verification replays the journaled postings against (shared/audit.py).
AUDITED_LEDGER = audit.LedgerTables(lines=LINES, accounts=ACCOUNTS)


async def ensure_system_accounts(uow: UnitOfWork, now: datetime) -> None:
    """At start-up; replicas starting together are serialised by the lock (a second insert would fail)."""
    await uow.lock_name("system-accounts")
    existing = set((await uow.execute(sa.select(ACCOUNTS.c.account_id).where(
        ACCOUNTS.c.account_id.in_(SYSTEM_ACCOUNTS)))).scalars())
    for account_id in SYSTEM_ACCOUNTS:
        if account_id not in existing:
            await uow.execute(sa.insert(ACCOUNTS).values(account_id=account_id, kind="SYSTEM", balance_fen=0,
                                                         opened_at=now))


_LOCK_ACCOUNTS = PreparedIn(lambda accounts: for_update(sa.select(ACCOUNTS.c.account_id).where(
    ACCOUNTS.c.account_id.in_(accounts)).order_by(ACCOUNTS.c.account_id)))


async def lock_accounts(uow: UnitOfWork, account_ids: list[str]) -> None:
    """Lock these accounts' rows until the transaction ends (in id order, so two transactions that lock the
    same ones cannot deadlock): for a check that reads more than the guarded UPDATE sees (today's transfer
    count, a quota's reserve). SQLite has no row locks and needs none (one writer at a time)."""
    if uow.shares_rows:
        await uow.execute(*_LOCK_ACCOUNTS.bind(sorted(set(account_ids))))


async def open_account(uow: UnitOfWork, account_id: str, kind: str, owner_psn_no: str, now: datetime) -> bool:
    """Create the account if missing; True when it was created now."""
    found = (await uow.execute(sa.select(ACCOUNTS.c.account_id).where(ACCOUNTS.c.account_id == account_id))).first()
    if found:
        return False
    await uow.execute(sa.insert(ACCOUNTS).values(account_id=account_id, kind=kind, owner_psn_no=owner_psn_no,
                                                 balance_fen=0, opened_at=now))
    return True


_BALANCE = sa.select(ACCOUNTS.c.balance_fen).where(ACCOUNTS.c.account_id == sa.bindparam("account"))


async def balance(view: UnitOfWork | ReadView, account_id: str) -> int | None:
    row = (await view.execute(_BALANCE, {"account": account_id})).first()
    if row is None:
        return None
    pending: dict[str, int] = view.state.get(_PENDING_SYSTEM, {}) if isinstance(view, UnitOfWork) else {}
    return int(row.balance_fen) + pending.get(account_id, 0)


_BALANCES = PreparedIn(lambda accounts: sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.balance_fen).where(
    ACCOUNTS.c.account_id.in_(accounts)))


async def balances(view: UnitOfWork | ReadView, account_ids: list[str]) -> dict[str, int]:
    if not account_ids:
        return {}
    rows = await view.execute(*_BALANCES.bind(list(account_ids)))
    return {row.account_id: int(row.balance_fen) for row in rows}


# Built once: a constant statement's compiled form and cache key are reused, which matters on the hot path.
_NEW_ENTRY = Prepared(sa.insert(ENTRIES).returning(ENTRIES.c.entry_id))
_MOVE_ANY = sa.update(ACCOUNTS).where(ACCOUNTS.c.account_id == sa.bindparam("account")).values(
    balance_fen=ACCOUNTS.c.balance_fen + sa.bindparam("delta_fen", type_=sa.BigInteger))
_MOVE = Prepared(_MOVE_ANY)
_MOVE_GUARDED = Prepared(_MOVE_ANY.where(
    ACCOUNTS.c.balance_fen + sa.bindparam("delta_fen", type_=sa.BigInteger) >= 0))
_NEW_LINES = Prepared(sa.insert(LINES))


_PENDING_SYSTEM = "ledger.pending_system_fen"


def _pending_system(uow: UnitOfWork) -> dict[str, int]:
    """This transaction's not yet applied system-account changes, applied just before it commits."""
    pending: dict[str, int] | None = uow.state.get(_PENDING_SYSTEM)
    if pending is None:
        pending = uow.state[_PENDING_SYSTEM] = {}
        uow.before_commit(lambda: _apply_system_changes(uow, pending))
    return pending


async def _apply_system_changes(uow: UnitOfWork, pending: dict[str, int]) -> None:
    for account_id in sorted(pending):
        if pending[account_id] and (await uow.execute(_MOVE, {"account": account_id, "delta_fen": pending[account_id]})
                                    ).rowcount != 1:
            raise AssertionError(f"system account {account_id} is missing")
    pending.clear()


async def post(uow: UnitOfWork, posting: Posting, now: datetime) -> None:
    entry_id = (await uow.execute(_NEW_ENTRY, {"kind": posting.kind, "ref": posting.ref, "posted_at": now})
                ).scalar_one()
    for account_id, amount_fen in posting.legs:
        if may_go_negative(account_id):
            pending = _pending_system(uow)
            pending[account_id] = pending.get(account_id, 0) + amount_fen
        elif (await uow.execute(_MOVE_GUARDED, {"account": account_id, "delta_fen": amount_fen})).rowcount != 1:
            # The unit of work rolls back: the whole posting (and the use case) leaves no trace.
            raise DomainError("INSUFFICIENT_FUNDS", f"{account_id.split(':')[0]} cannot cover {-amount_fen} fen")
    await uow.execute(_NEW_LINES, [{"entry_id": entry_id, "account_id": a, "amount_fen": f}
                                   for a, f in posting.legs])
    # Issue 12: the posting in the audit journal, same transaction (verification replays it on the balances).
    await audit.append(uow, audit.POSTING, posting.ref, audit.legs_data(entry_id, posting.kind, posting.ref,
                                                                        posting.legs), now)


async def totals_by_kind(view: UnitOfWork | ReadView) -> dict[str, int]:
    """Sum of balances per account kind, system accounts by name (for conservation checks)."""
    rows = await view.execute(sa.select(ACCOUNTS.c.kind, ACCOUNTS.c.account_id, ACCOUNTS.c.balance_fen))
    totals: dict[str, int] = {}
    for row in rows:
        key = row.account_id if row.kind == "SYSTEM" else row.kind
        totals[key] = totals.get(key, 0) + int(row.balance_fen)
    return totals


async def journal_is_balanced(view: UnitOfWork | ReadView) -> bool:
    """Every entry's lines sum to zero, and the account balances equal the sum of their lines."""
    unbalanced = (await view.execute(
        sa.select(LINES.c.entry_id).group_by(LINES.c.entry_id).having(sa.func.sum(LINES.c.amount_fen) != 0).limit(1)
    )).first()
    if unbalanced is not None:
        return False
    line_sums = dict((await view.execute(
        sa.select(LINES.c.account_id, sa.func.sum(LINES.c.amount_fen)).group_by(LINES.c.account_id))).all())
    for row in await view.execute(sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.balance_fen)):
        if int(line_sums.get(row.account_id, 0)) != int(row.balance_fen):
            return False
    return True
