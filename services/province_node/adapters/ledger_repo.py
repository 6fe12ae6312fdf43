"""Applies postings to the node's database. The guard `balance + delta >= 0` is in the UPDATE itself, so no
citizen account can go negative even if a use case forgot to check first.

Hot accounts. System accounts (SYS:CLEARING, SYS:IN_FLIGHT, ...) take part in nearly every posting. Updating
their `accounts` row made it the hottest row in the database: on PostgreSQL each transaction held its lock from
the UPDATE to its commit, so every transfer's accept queued behind the one before (issue 9, measured: 6.5 ms of
lock wait per accept at 120 transfers/s, which capped the giver's node below 200/s). So a transaction does not
touch a system account's row: it sums its changes per system account and, as it commits, inserts one
`system_account_deltas` row per account (an insert takes no lock anyone waits for). A system account's balance
is its row's plus its delta rows (`_WITH_DELTAS`); `fold_system_deltas`, a job of each node, moves the delta rows it
can see into the rows now and then, deleting exactly those rows in the transaction that adds them, so each delta
counts once whatever commits meanwhile (and whichever replica folds). Citizen accounts keep their guarded
UPDATE: their rows are only as hot as one person."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from services.province_node.adapters.tables import Account, LedgerEntry, LedgerLine, SystemAccountDelta
from services.province_node.domain.errors import DomainError
from services.province_node.domain.ledger import SYSTEM_ACCOUNTS, Posting, may_go_negative
from shared import audit
from shared.db import Prepared, PreparedIn, ReadView, UnitOfWork, for_update
from shared.tables import table

ACCOUNTS = table(Account)
ENTRIES = table(LedgerEntry)
LINES = table(LedgerLine)
DELTAS = table(SystemAccountDelta)


# An account's balance: its row's plus its system-account changes not folded yet (none for a citizen's).
_WITH_DELTAS = sa.type_coerce(ACCOUNTS.c.balance_fen + sa.select(
    sa.func.coalesce(sa.func.sum(DELTAS.c.delta_fen), 0)).where(
    DELTAS.c.account_id == ACCOUNTS.c.account_id).scalar_subquery(), sa.BigInteger).label("balance_fen")

# Every account's balance (one statement, so one snapshot of rows and deltas); what audit verification replays
# the journaled postings against (shared/audit.py).
ALL_BALANCES = sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.kind, _WITH_DELTAS)
AUDITED_LEDGER = audit.LedgerTables(lines=LINES, balances=ALL_BALANCES)


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


_BALANCE = Prepared(sa.select(ACCOUNTS.c.balance_fen).where(ACCOUNTS.c.account_id == sa.bindparam("account")))
_SYSTEM_BALANCE = Prepared(sa.select(_WITH_DELTAS).where(ACCOUNTS.c.account_id == sa.bindparam("account")))


async def balance(view: UnitOfWork | ReadView, account_id: str) -> int | None:
    system = may_go_negative(account_id)
    row = (await view.execute(_SYSTEM_BALANCE if system else _BALANCE, {"account": account_id})).first()
    if row is None:
        return None
    pending: dict[str, int] = view.state.get(_PENDING_SYSTEM, {}) if isinstance(view, UnitOfWork) else {}
    return int(row.balance_fen) + pending.get(account_id, 0)


_BALANCES = PreparedIn(lambda accounts: sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.balance_fen).where(
    ACCOUNTS.c.account_id.in_(accounts)))


_LOCKED_BALANCES = PreparedIn(lambda accounts: for_update(sa.select(ACCOUNTS.c.account_id, ACCOUNTS.c.balance_fen)
                                                          .where(ACCOUNTS.c.account_id.in_(accounts))
                                                          .order_by(ACCOUNTS.c.account_id)))


async def balances(view: UnitOfWork | ReadView, account_ids: list[str], *, lock: bool = False) -> dict[str, int]:
    """Citizen accounts' balances (a system account's is `balance`'s: rows plus deltas). `lock` (in a unit of
    work): their rows locked until it ends, in id order, as `lock_accounts` locks them, by the read itself: for a
    decision on balances nobody else changes meanwhile (a settle's split, a transfer's daily limit)."""
    if not account_ids:
        return {}
    assert not any(may_go_negative(a) for a in account_ids), "system balances are read through balance()"
    assert not lock or isinstance(view, UnitOfWork), "rows are locked in a unit of work"
    if lock and isinstance(view, UnitOfWork) and view.shares_rows:  # SQLite: one writer at a time, no row locks
        rows = await view.execute(*_LOCKED_BALANCES.bind(sorted(set(account_ids))))
    else:
        rows = await view.execute(*_BALANCES.bind(list(account_ids)))
    return {row.account_id: int(row.balance_fen) for row in rows}


# Built once: a constant statement's compiled form and cache key are reused, which matters on the hot path.
_NEW_ENTRY = Prepared(sa.insert(ENTRIES).returning(ENTRIES.c.entry_id))
_MOVE_ANY = sa.update(ACCOUNTS).where(ACCOUNTS.c.account_id == sa.bindparam("account")).values(
    balance_fen=ACCOUNTS.c.balance_fen + sa.bindparam("delta_fen", type_=sa.BigInteger))
_MOVE_GUARDED = Prepared(_MOVE_ANY.where(
    ACCOUNTS.c.balance_fen + sa.bindparam("delta_fen", type_=sa.BigInteger) >= 0))
_NEW_LINES = Prepared(sa.insert(LINES))
# PostgreSQL, a posting with one citizen leg (a transfer's hold and credit, most settles): the guarded move and
# the entry in one statement, one round trip where there were two. No entry is written unless the move was. The
# entry's values are `entry_` parameters: a parameter named as an accounts column (`kind`) would be SET by the
# UPDATE too (a Prepared plan names its parameters as column keys).
_MOVED = _MOVE_GUARDED.statement.returning(ACCOUNTS.c.account_id).cte("moved")
_ENTRY_COLUMNS = ("kind", "ref", "posted_at")
_NEW_ENTRY_IF_MOVED = Prepared(sa.insert(ENTRIES).from_select(
    list(_ENTRY_COLUMNS),
    sa.select(*[sa.bindparam(f"entry_{name}", type_=ENTRIES.c[name].type) for name in _ENTRY_COLUMNS])
    .where(sa.exists(sa.select(_MOVED.c.account_id)))).returning(ENTRIES.c.entry_id).add_cte(_MOVED))
_NEW_DELTA = Prepared(sa.insert(DELTAS))


_PENDING_SYSTEM = "ledger.pending_system_fen"


def _pending_system(uow: UnitOfWork) -> dict[str, int]:
    """This transaction's not yet applied system-account changes, applied just before it commits."""
    pending: dict[str, int] | None = uow.state.get(_PENDING_SYSTEM)
    if pending is None:
        pending = uow.state[_PENDING_SYSTEM] = {}
        uow.before_commit(lambda: _apply_system_changes(uow, pending))
    return pending


async def _apply_system_changes(uow: UnitOfWork, pending: dict[str, int]) -> None:
    # Deferred: written with the commit's other deferred rows, nothing reads them back in this transaction.
    for account_id, delta_fen in sorted(pending.items()):
        if delta_fen:
            uow.defer(_NEW_DELTA, {"account_id": account_id, "delta_fen": delta_fen})
    pending.clear()


FOLD_BATCH = 5000
_FOLDED = sa.delete(DELTAS).where(DELTAS.c.id.in_(
    sa.select(DELTAS.c.id).order_by(DELTAS.c.id).limit(FOLD_BATCH).scalar_subquery())).returning(
    DELTAS.c.account_id, DELTAS.c.delta_fen)


async def fold_system_deltas(uow: UnitOfWork) -> int:
    """Move up to FOLD_BATCH committed delta rows into their accounts' rows; the number moved. The rows are
    deleted by the statement that reads them, in the transaction that adds them: a delta committed meanwhile
    is simply left for the next round, and two folders cannot both take one row (the second waits for the
    first's delete, then finds the row gone)."""
    sums: dict[str, int] = {}
    moved = 0
    for row in await uow.execute(_FOLDED):
        sums[row.account_id] = sums.get(row.account_id, 0) + int(row.delta_fen)
        moved += 1
    for account_id in sorted(sums):  # id order: no deadlock with another folder
        if sums[account_id] and (await uow.execute(
                _MOVE_ANY, {"account": account_id, "delta_fen": sums[account_id]})).rowcount != 1:
            raise AssertionError(f"system account {account_id} is missing")
    return moved


def _cannot_cover(account_id: str, amount_fen: int) -> DomainError:
    # Raised, the unit of work rolls back: the whole posting (and the use case) leaves no trace.
    return DomainError("INSUFFICIENT_FUNDS", f"{account_id.split(':')[0]} cannot cover {-amount_fen} fen")


async def post(uow: UnitOfWork, posting: Posting, now: datetime) -> None:
    entry = {"kind": posting.kind, "ref": posting.ref, "posted_at": now}
    citizen_legs = [(account_id, amount_fen) for account_id, amount_fen in posting.legs
                    if not may_go_negative(account_id)]
    if uow.shares_rows and len(citizen_legs) == 1:
        account_id, amount_fen = citizen_legs[0]
        written = (await uow.execute(_NEW_ENTRY_IF_MOVED, {
            **{f"entry_{name}": value for name, value in entry.items()}, "account": account_id,
            "delta_fen": amount_fen})).first()
        if written is None:
            raise _cannot_cover(account_id, amount_fen)
        entry_id = written.entry_id
    else:
        entry_id = (await uow.execute(_NEW_ENTRY, entry)).scalar_one()
        for account_id, amount_fen in citizen_legs:
            if (await uow.execute(_MOVE_GUARDED, {"account": account_id, "delta_fen": amount_fen})).rowcount != 1:
                raise _cannot_cover(account_id, amount_fen)
    for account_id, amount_fen in posting.legs:
        if may_go_negative(account_id):
            pending = _pending_system(uow)
            pending[account_id] = pending.get(account_id, 0) + amount_fen
    # Written as the transaction commits, with every other posting's lines of a consumer's batch in one
    # statement (UnitOfWork.defer): nothing reads them back before, and their entry is written already.
    for account_id, amount_fen in posting.legs:
        uow.defer(_NEW_LINES, {"entry_id": entry_id, "account_id": account_id, "amount_fen": amount_fen})
    # Issue 12: the posting in the audit journal, same transaction (verification replays it on the balances).
    await audit.append(uow, audit.POSTING, posting.ref, audit.legs_data(entry_id, posting.kind, posting.ref,
                                                                        posting.legs), now)


async def totals_by_kind(view: UnitOfWork | ReadView) -> dict[str, int]:
    """Sum of balances per account kind, system accounts by name (for conservation checks)."""
    rows = await view.execute(ALL_BALANCES)
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
    for row in await view.execute(ALL_BALANCES):
        if int(line_sums.get(row.account_id, 0)) != int(row.balance_fen):
            return False
    return True
