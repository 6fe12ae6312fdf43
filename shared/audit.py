"""The audit journal of one service instance (issue 12; API.md "Audit chain"): append-only, hash-chained, and
written in the same transaction as the change each entry records, so no change commits without its entry.

Entry `seq` n holds `body`, the canonical JSON (sorted keys, no spaces, UTF-8) of {seq, at, kind, ref, data}, and
`hash` = SHA-256(0x00 ‖ bytes(prev_hash) ‖ body), prev_hash being entry n-1's hash (entry 1: 32 zero bytes).
Editing any entry breaks its own hash; rewriting the chain from there on breaks the heads the hub holds
(checkpoints, sent over Kafka at least every 10 s). Ledger postings carry their legs, so verification also
replays them against the stored postings and balances (`verify`): an edited line or balance shows up too.

SQLite (one writer at a time, shared/db/): the transaction's entries are numbered and chained with its last
statements, under the write lock it holds anyway, so the journal is complete and chained at every commit.

PostgreSQL (replicas of an instance share one schema and one chain; concurrent transactions of one replica too):
numbering at commit would need one lock for the whole instance, held from the head's read to the commit, which
queued every commit behind the one before. Instead a transaction only inserts its entries, unnumbered, into
`audit_pending` (key from a sequence, no lock), and one sealer per instance (`Sealer`, advisory lock
`audit-seal` as in `UnitOfWork.lead`) moves them into the chain shortly after, in one transaction per round:
read the pending rows it can see in key order, number and chain them after the head, insert them, delete
exactly those rows. Like the outbox relay (shared/outbox.py) it keeps no high-water mark, so a row whose key was
handed out early but committed late is sealed by a later round, never skipped: the chain has no gaps, and two
changes of one thing (whose transactions take turns on its row) are sealed in the order they committed.
Checkpoints seal first; verification seals first and also replays the postings of rows still pending (written
with their postings, in one snapshot), so an entry waiting for its round never looks like a missing one."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydField
from sqlmodel import Field, SQLModel

from shared.contracts import topics
from shared.contracts.events import AuditCheckpointed
from shared.db import Database, Prepared, ReadView, UnitOfWork, in_unit_of_work, run_retrying
from shared.messaging_tables import BIGINT
from shared.outbox import emit
from shared.tables import table
from shared.web import require_internal

log = logging.getLogger("yibao.audit")
ZERO_HASH = "0" * 64
POSTING = "ledger.posting"
GENESIS = "genesis"


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_journal"

    seq: int = Field(primary_key=True, sa_type=BIGINT, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(max_length=40)
    ref: str = Field(max_length=80)  # no index: every posting appends one, and nothing looks entries up by ref
    body: str  # the canonical JSON that was hashed
    hash: str = Field(max_length=64)


class AuditPending(SQLModel, table=True):
    """PostgreSQL: an entry written by its change's transaction and not yet in the chain (see the module's
    docstring). `at` is the ISO time and `data` the canonical JSON that go into the entry's body."""

    __tablename__ = "audit_pending"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    kind: str = Field(max_length=40)
    ref: str = Field(max_length=80)
    at: str = Field(max_length=40)
    data: str


AUDIT_TABLES = (AuditEntry, AuditPending)
JOURNAL = table(AuditEntry)
PENDING = table(AuditPending)
_HEAD = Prepared(sa.select(JOURNAL.c.seq, JOURNAL.c.hash).order_by(JOURNAL.c.seq.desc()).limit(1))
_NEW_ENTRY = Prepared(sa.insert(JOURNAL))
_NEW_PENDING = Prepared(sa.insert(PENDING))
_OLDEST_PENDING = (sa.select(PENDING.c.id, PENDING.c.kind, PENDING.c.ref, PENDING.c.at, PENDING.c.data)
                   .order_by(PENDING.c.id).limit(sa.bindparam("batch", type_=sa.Integer)))
_SEALED = sa.delete(PENDING).where(PENDING.c.id.in_(sa.bindparam("ids", expanding=True)))
_STATE = "audit.pending"  # UnitOfWork.state: this transaction's entries, written just before it commits
SEAL_JOB = "audit-seal"
SEAL_BATCH = 2000


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(b"\x00" + bytes.fromhex(prev_hash) + body).hexdigest()


def entry_body(seq: int, at: datetime, kind: str, ref: str, data: Mapping[str, Any]) -> bytes:
    return canonical({"seq": seq, "at": at.astimezone(UTC).isoformat(), "kind": kind, "ref": ref,
                      "data": dict(data)})


def sealed_body(seq: int, at_iso: str, kind: str, ref: str, data_json: str) -> bytes:
    """entry_body of a pending row, whose data is already canonical JSON: the same bytes, spliced (the keys of
    {at, data, kind, ref, seq} in sorted order) rather than parsed and dumped again."""
    return (b'{"at":' + canonical(at_iso) + b',"data":' + data_json.encode() + b',"kind":' + canonical(kind)
            + b',"ref":' + canonical(ref) + b',"seq":' + str(seq).encode() + b"}")


Pending = list[tuple[str, str, dict[str, Any], datetime]]


async def append(uow: UnitOfWork, kind: str, ref: str, data: Mapping[str, Any],
                 at: datetime | None = None) -> None:
    """Journal one change of the transaction making it. The entries are written with the transaction's last
    statements (UnitOfWork.before_commit): chained then on SQLite, handed to the sealer on PostgreSQL."""
    pending: Pending | None = uow.state.get(_STATE)
    if pending is None:
        pending = uow.state[_STATE] = []
        uow.before_commit(lambda: _write_pending(uow, pending))
    pending.append((kind, ref[:80], dict(data), at or datetime.now(UTC)))


async def _write_pending(uow: UnitOfWork, pending: Pending) -> None:
    if not pending:
        return
    entries, pending[:] = list(pending), []
    if not uow.shares_rows:
        await _chain(uow, entries)  # SQLite: the write lock is held; number and chain now
        return
    # With the transaction's other deferred rows: one statement for all of them (UnitOfWork.defer).
    for kind, ref, data, at in entries:
        uow.defer(_NEW_PENDING, {"kind": kind, "ref": ref, "at": at.astimezone(UTC).isoformat(),
                                 "data": canonical(data).decode()})
    for wakeup in _SEALERS:
        wakeup.set()


async def _chain(uow: UnitOfWork, entries: Pending) -> None:
    """Number and chain entries after the head (SQLite; or the genesis, under the sealer's lock)."""
    head = (await uow.execute(_HEAD, {})).first()
    seq, prev_hash = (0, ZERO_HASH) if head is None else (int(head.seq), head.hash)
    rows = []
    for kind, ref, data, at in entries:
        seq += 1
        body = entry_body(seq, at, kind, ref, data)
        prev_hash = chain_hash(prev_hash, body)
        rows.append({"seq": seq, "kind": kind, "ref": ref, "body": body.decode(), "hash": prev_hash})
    await uow.execute(_NEW_ENTRY, rows)


# ------------------------------------------------------------------------------------- sealing (PostgreSQL)

# The running sealers' wake-ups: an append wakes this process's sealer (one per process in a service; tests
# may run several, which a spurious wake-up costs one empty round).
_SEALERS: set[asyncio.Event] = set()


async def seal(db: Database, batch: int = SEAL_BATCH) -> int:
    """Move the pending entries visible now into the chain, as the instance's sealer; returns how many (0 on
    SQLite, and when another replica is sealing: that one takes them)."""
    return await _seal_as_leader(db, batch) or 0


async def _seal_as_leader(db: Database, batch: int = SEAL_BATCH) -> int | None:
    """`seal`, or None when another replica is the sealer now."""
    if db.inline:
        return 0
    total = 0
    while True:
        sealed = await run_retrying(lambda: _seal_round(db, batch))
        if sealed is None:
            return total if total else None
        total += sealed
        if sealed < batch:
            return total


async def _seal_round(db: Database, batch: int) -> int | None:
    async with UnitOfWork(db) as uow:
        if not await uow.lead(SEAL_JOB):
            return None
        rows = (await uow.execute(_OLDEST_PENDING, {"batch": batch})).all()
        if not rows:
            return 0
        head = (await uow.execute(_HEAD, {})).first()
        seq, prev_hash = (0, ZERO_HASH) if head is None else (int(head.seq), head.hash)
        entries = []
        for row in rows:
            seq += 1
            body = sealed_body(seq, row.at, row.kind, row.ref, row.data)
            prev_hash = chain_hash(prev_hash, body)
            entries.append({"seq": seq, "kind": row.kind, "ref": row.ref, "body": body.decode(), "hash": prev_hash})
        await uow.execute(_NEW_ENTRY, entries)
        await uow.execute(_SEALED, {"ids": [row.id for row in rows]})
        await uow.commit()
    return len(rows)


class Sealer:
    """The background job that seals this instance's pending entries (PostgreSQL; on SQLite it returns at once):
    woken by this process's appends (it lingers a moment, so the commit that woke it is visible and the entries
    of commits close behind join the round), and polling for other replicas' entries, whose sealer may have
    died (the advisory lock passes at once). A replica that found another sealing waits for its next poll
    before it asks again: asking on every append cost a BEGIN, the lock's try and a ROLLBACK each (issue 9)."""

    # Sealing is off every answer's path (checkpoints and verification seal first), so a round waits for the
    # appends of the next half second: at 200 audited commits a second a round per commit was 7 statements each,
    # and a round every 50 ms still cost a node a third of its CPU per settle (issue 9). The poll for other
    # replicas' entries comes every second (each poll is a transaction in every replica).
    def __init__(self, db: Database, *, poll_interval_s: float = 1.0, linger_s: float = 0.5) -> None:
        self._db = db
        self._poll_interval_s = poll_interval_s
        self._linger_s = linger_s
        self._wakeup = asyncio.Event()
        self._stopped = asyncio.Event()
        self.sealed_total = 0

    def stop(self) -> None:
        self._stopped.set()
        self._wakeup.set()

    async def _pause(self, event: asyncio.Event, timeout_s: float) -> None:
        """Until `event` is set or `timeout_s` passed (stop sets both events)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=timeout_s)

    async def run(self) -> None:
        if self._db.inline:
            return
        _SEALERS.add(self._wakeup)
        try:
            while not self._stopped.is_set():
                try:
                    sealed = await _seal_as_leader(self._db)
                except Exception:
                    log.exception("sealing the audit journal failed; retrying")
                    await self._pause(self._stopped, 1.0)
                    continue
                if sealed is None:  # another replica seals: its own appends and polls wake it
                    await self._pause(self._stopped, self._poll_interval_s)
                    self._wakeup.clear()
                    continue
                self.sealed_total += sealed
                await self._pause(self._wakeup, self._poll_interval_s)
                self._wakeup.clear()
                await self._pause(self._stopped, self._linger_s)
        finally:
            _SEALERS.discard(self._wakeup)


@dataclass(frozen=True)
class Head:
    head_seq: int
    head_hash: str

    @property
    def entries(self) -> int:
        """Entries are numbered densely from 1 and never removed, so the head's seq is also how many there are:
        counting the rows instead read the whole journal at every checkpoint (every few seconds, in every
        service, on a table that only grows). An entry missing from the middle is what `verify` finds, walking
        the chain."""
        return self.head_seq


async def head(view: UnitOfWork | ReadView) -> Head:
    """The journal's last entry."""
    row = (await view.execute(_HEAD, {})).first()
    if row is None:
        return Head(0, ZERO_HASH)
    return Head(int(row.seq), row.hash)


@dataclass
class Verdict:
    ok: bool
    entries_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None

    def view(self, service: str) -> dict[str, Any]:
        out: dict[str, Any] = {"service": service, "ok": self.ok, "entries_checked": self.entries_checked}
        if not self.ok:
            out |= {"first_bad_seq": self.first_bad_seq, "reason": self.reason}
        return out

    def fail(self, seq: int, reason: str) -> None:
        """Keep the earliest failure."""
        if self.ok or (self.first_bad_seq is not None and seq < self.first_bad_seq):
            self.ok, self.first_bad_seq, self.reason = False, seq, reason


@dataclass
class ReplayedPostings:
    """What the journal says the ledger holds: each posting's legs (by ledger entry id) and each account's
    balance (from the genesis snapshot plus every journaled leg), with the seq that last touched it."""

    legs_by_entry: dict[int, tuple[int, list[tuple[str, int]]]]  # entry_id -> (seq, legs)
    balances: dict[str, int]
    last_seq_of_account: dict[str, int]
    genesis_max_entry_id: int


def replay_pending(rows: Iterable[Any], replay: ReplayedPostings, next_seq: int) -> None:
    """Postings whose entries are still pending (PostgreSQL; read in the ledger's snapshot): journaled but not
    yet chained, so replayed as if sealed next (`next_seq` names them in a failure)."""
    for row in rows:
        if row.kind != POSTING:
            continue
        try:
            data = json.loads(row.data)
        except ValueError:
            continue
        legs = [(str(a), int(f)) for a, f in data.get("legs", [])]
        replay.legs_by_entry[int(data.get("entry_id", 0))] = (next_seq, legs)
        for account, amount in legs:
            replay.balances[account] = replay.balances.get(account, 0) + amount
            replay.last_seq_of_account[account] = next_seq


def verify_chain(rows: Iterable[Any], checkpoints: Mapping[int, str], verdict: Verdict) -> ReplayedPostings:
    """Recompute the chain (rows in seq order: seq, body, hash) and check it holds every checkpointed head;
    gather the journaled postings for the caller's ledger check."""
    replay = ReplayedPostings({}, {}, {}, 0)
    prev_seq, prev_hash = 0, ZERO_HASH
    for row in rows:
        seq = int(row.seq)
        verdict.entries_checked += 1
        if seq != prev_seq + 1:
            verdict.fail(prev_seq + 1, "entry missing")
        body = row.body.encode()
        if chain_hash(prev_hash, body) != row.hash:
            verdict.fail(seq, "hash mismatch: the entry was changed")
        try:
            decoded = json.loads(row.body)  # the str: json skips guessing the bytes' encoding
        except ValueError:
            decoded = {}
        if decoded.get("seq") != seq:
            verdict.fail(seq, "entry renumbered")
        expected = checkpoints.get(seq)
        if expected is not None and expected != row.hash:
            verdict.fail(seq, "differs from the head checkpointed at the hub")
        data = decoded.get("data") or {}
        if decoded.get("kind") == GENESIS:
            for account, balance in (data.get("balances") or {}).items():
                replay.balances[account] = int(balance)
                replay.last_seq_of_account[account] = seq
            replay.genesis_max_entry_id = int(data.get("max_entry_id") or 0)
        elif decoded.get("kind") == POSTING:
            legs = [(str(a), int(f)) for a, f in data.get("legs", [])]
            replay.legs_by_entry[int(data.get("entry_id", 0))] = (seq, legs)
            for account, amount in legs:
                replay.balances[account] = replay.balances.get(account, 0) + amount
                replay.last_seq_of_account[account] = seq
        prev_seq, prev_hash = seq, row.hash
    beyond = [s for s in checkpoints if s > prev_seq]
    if beyond:
        verdict.fail(prev_seq + 1, "the journal is shorter than a head checkpointed at the hub")
    return replay


def check_ledger(replay: ReplayedPostings, stored_lines: Mapping[int, list[tuple[str, int]]],
                 stored_balances: Mapping[str, int], verdict: Verdict) -> None:
    """The stored postings (ledger lines by entry id, entries after the genesis) and balances against the
    journal's: a posting edited, added or removed, or a balance changed behind the service's back."""
    head_seq = verdict.entries_checked
    for entry_id, lines in stored_lines.items():
        journaled = replay.legs_by_entry.get(entry_id)
        if journaled is None:
            verdict.fail(head_seq, f"ledger entry {entry_id} is not in the journal")
        elif sorted(journaled[1]) != sorted(lines):
            verdict.fail(journaled[0], f"ledger entry {entry_id} differs from its journal entry")
    for entry_id, (seq, _) in replay.legs_by_entry.items():
        if entry_id not in stored_lines:
            verdict.fail(seq, f"ledger entry {entry_id} was removed")
    for account, balance in stored_balances.items():
        if replay.balances.get(account, 0) != balance:
            verdict.fail(replay.last_seq_of_account.get(account, head_seq),
                         f"balance of {account.split(':')[0]} differs from the journaled postings")


async def journal_rows(view: UnitOfWork | ReadView) -> list[Any]:
    return list((await view.execute(sa.select(JOURNAL.c.seq, JOURNAL.c.body, JOURNAL.c.hash)
                                     .order_by(JOURNAL.c.seq))).all())


def checkpoint_map(pairs: Iterable[tuple[int, str]]) -> dict[int, str]:
    return {int(seq): str(hash_) for seq, hash_ in pairs}


def stored_lines_from(rows: Iterable[Any]) -> dict[int, list[tuple[str, int]]]:
    out: dict[int, list[tuple[str, int]]] = {}
    for row in rows:
        out.setdefault(int(row.entry_id), []).append((str(row.account_id), int(row.amount_fen)))
    return out


def legs_data(entry_id: int, kind: str, ref: str, legs: Iterable[tuple[str, int]]) -> dict[str, Any]:
    return {"entry_id": entry_id, "kind": kind, "ref": ref, "legs": [[a, f] for a, f in legs]}


# ------------------------------------------------------------------------------- verification, checkpoints


@dataclass(frozen=True)
class LedgerTables:
    """A service whose journal carries ledger postings (the province node): where its postings and balances are."""

    lines: sa.Table  # entry_id, account_id, amount_fen
    balances: Any  # a SELECT of every account's account_id and balance_fen


async def verify(db: Database, checkpoints: Mapping[int, str], ledger: LedgerTables | None) -> Verdict:
    """Recompute the chain, check the checkpointed heads, replay the journaled postings against the ledger.
    One snapshot: on PostgreSQL a REPEATABLE READ transaction, on SQLite the read transaction (WAL). On
    PostgreSQL what is pending is sealed first, and what is still pending in the snapshot is replayed too."""
    await seal(db)
    verdict = Verdict(True, 0)
    async with ReadView(db) as view:
        if not db.inline:
            await view.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        rows = await journal_rows(view)
        replay = verify_chain(rows, checkpoints, verdict)
        if not db.inline:
            pending = (await view.execute(sa.select(PENDING.c.kind, PENDING.c.data).order_by(PENDING.c.id))).all()
            replay_pending(pending, replay, (int(rows[-1].seq) if rows else 0) + 1)
        if ledger is not None:
            lines = stored_lines_from((await view.execute(sa.select(
                ledger.lines.c.entry_id, ledger.lines.c.account_id, ledger.lines.c.amount_fen).where(
                ledger.lines.c.entry_id > replay.genesis_max_entry_id))).all())
            balances = {row.account_id: int(row.balance_fen)
                        for row in (await view.execute(ledger.balances)).all()}
            check_ledger(replay, lines, balances, verdict)
    return verdict


async def ensure_genesis(db: Database, ledger: LedgerTables | None, entries: sa.Table | None = None) -> None:
    """The first entry of a journal started on an existing database: the balances and the last ledger entry it
    starts from (postings before it are outside the chain). Idempotent; replicas take turns (the sealer's
    lock). None when entries are pending already: the journal started with them."""

    async def work(uow: UnitOfWork) -> None:
        await uow.lock_name(SEAL_JOB)
        if (await uow.execute(_HEAD, {})).first() is not None:
            return
        if (await uow.execute(sa.select(PENDING.c.id).limit(1))).first() is not None:
            return
        data: dict[str, Any] = {}
        if ledger is not None:
            data["balances"] = {row.account_id: int(row.balance_fen)
                                for row in (await uow.execute(ledger.balances)).all() if row.balance_fen}
            data["max_entry_id"] = int((await uow.execute(sa.select(sa.func.coalesce(
                sa.func.max(ledger.lines.c.entry_id), 0)))).scalar_one())
        await _chain(uow, [(GENESIS, "genesis", data, datetime.now(UTC))])

    await in_unit_of_work(db, work)


class Checkpointer:
    """Sends this instance's journal head to the hub through the outbox (`audit.checkpoint.v1`), every round
    (API.md: at least every 10 s), sealing what is pending first; on PostgreSQL one replica per round (they
    share the journal)."""

    def __init__(self, db: Database, service: str, send: Callable[[UnitOfWork, AuditCheckpointed], Awaitable[None]]
                 ) -> None:
        self._db = db
        self._service = service
        self._send = send

    async def round(self) -> None:
        await seal(self._db)

        async def work(uow: UnitOfWork) -> None:
            if not await uow.lead("audit-checkpoint"):
                return
            current = await head(uow)
            await self._send(uow, AuditCheckpointed(service=self._service, head_seq=current.head_seq,
                                                    head_hash=current.head_hash, entries=current.entries,
                                                    at=datetime.now(UTC)))

        await in_unit_of_work(self._db, work)


def outbox_sender(source: str) -> Callable[[UnitOfWork, AuditCheckpointed], Awaitable[None]]:
    """Nodes and the gateway: the checkpoint goes to the hub's inbound topic."""

    async def send(uow: UnitOfWork, checkpoint: AuditCheckpointed) -> None:
        await emit(uow, topics.HUB_INBOUND, checkpoint.service, checkpoint, source=source,
                   trace_id=f"audit-{checkpoint.service}")

    return send


class VerifyRequest(BaseModel):
    """POST /internal/v1/audit:verify (hub -> node or gateway): the heads the hub holds for this service."""

    model_config = ConfigDict(extra="ignore")
    checkpoints: list[tuple[int, str]] = PydField(default_factory=list, max_length=1_000_000)


def internal_router(db_of: Callable[[], Database], service: str, ledger: LedgerTables | None) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", tags=["internal"], dependencies=[Depends(require_internal)])

    @router.post("/audit:verify")
    async def verify_route(body: VerifyRequest) -> dict[str, Any]:
        verdict = await verify(db_of(), checkpoint_map(body.checkpoints), ledger)
        return verdict.view(service)

    @router.get("/audit/head")
    async def head_route() -> dict[str, Any]:
        async with ReadView(db_of()) as view:
            current = await head(view)
        return {"service": service, "entries": current.entries, "head_seq": current.head_seq,
                "head_hash": current.head_hash}

    return router
