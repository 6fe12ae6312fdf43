"""Dead letters: a consumed message that fails every retry is parked here instead of freezing its partition.

Why: the consumer loop (shared/kafka.py) applies a batch in one transaction and commits Kafka offsets only
after the database commit. A message whose handler always fails (a bug, a race the guards refuse, a payload a
newer producer wrote) used to be retried without end, so the whole consumer stopped, and with it every
partition it owns. Now such a message is stored in the `dead_letters` table of the service that consumed it,
with the error, and the loop goes on. Parked = durably stored, so its offset may then be committed.

Rules (the issue: "nothing is lost or applied twice, and the money it concerns stays where it was"):
- A parked message is NOT in the inbox: it has not been applied. It is applied only by a replay, in one unit of
  work with inbox dedupe (a message some other path applied meanwhile is marked REPLAYED without running twice).
- Order per key: every later message with the same (topic, Kafka key) is parked too, without running its
  handler, `blocked_by` the first PARKED one of that key (the head), so that a cancel cannot overtake its credit.
  Messages with other keys go on. A message without a key orders with nothing and blocks nothing.
- A message no schema can read is parked too (its id is then `kafka:<topic>:<partition>:<offset>`), and blocks its
  key: it may be a newer producer's message that a consumer upgrade will read on replay.
- A redelivered message that is already PARKED (offsets not committed before a restart) is dropped, not parked
  twice: `message_id` is unique.
- Replay (`replay`) runs at the service that parked the message: the head first, then the ones behind it in id
  order, each in its own unit of work, stopping at the first that fails again (it stays PARKED with the new
  error and becomes the head; the rest stay blocked behind it). Replaying one that has a PARKED dead letter of
  the same key before it is refused with 409 DEAD_LETTER_BLOCKED naming that head: the operator replays the head,
  which takes the rest along (an explicit choice rather than a replay that silently does more than asked).
- Replicas: state changes are guarded (`UPDATE … WHERE id=:id AND state='PARKED'`, act on the rowcount), in the
  same unit of work as the handler, so two replicas replaying the same dead letter apply it once. A message a
  consumer parks on one replica while a replay on another is draining that key may end up PARKED behind a head
  that is already REPLAYED; it is then a head itself (no PARKED one before it) and replayable on its own.

Shapes (internal API, shared/dead_letters_api.py): `list_dead_letters` items are
`{id, topic, partition, offset, key, message_type, message_id, error, state, parked_at, replayed_at, blocked_by,
attempts}` (no payload: operators see what and why, not the personal data); a replay answers
`{id, state, replayed: [ids], still_parked: [ids], error?}`."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from shared.clock import iso
from shared.contracts.envelope import Envelope
from shared.db import ByKeys, Database, Prepared, ReadView, UnitOfWork, run_retrying
from shared.messaging_tables import InboxMessage
from shared.tables import table
from shared.web import ApiError

log = logging.getLogger("yibao.dead_letters")

PARKED = "PARKED"
REPLAYED = "REPLAYED"
STATES = (PARKED, REPLAYED)
ERROR_MAX_CHARS = 2000
LIST_LIMIT = 1000

Handler = Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]
# Every integer 64-bit on PostgreSQL (int4 sequences run out, scale_out.md B13); SQLite's INTEGER is 64-bit
# already and autoincrements only under that exact type name.
_INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letters"
    __table_args__ = (sa.Index("ix_dead_letters_topic_key_state", "topic", "key", "state"),)

    id: int | None = Field(default=None, sa_column=sa.Column(_INT64, primary_key=True, autoincrement=True))
    # The envelope's id; `kafka:<topic>:<partition>:<offset>` for a message no schema reads. Unique: a
    # redelivery of a parked message is recognised, never parked twice.
    message_id: str = Field(sa_column=sa.Column(sa.Text(), nullable=False, unique=True))
    topic: str = Field(max_length=255)
    partition: int = Field(sa_type=_INT64)
    offset: int = Field(sa_column=sa.Column(_INT64, nullable=False))
    key: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    message_type: str | None = Field(default=None, max_length=255)
    payload: bytes
    error: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))
    state: str = Field(max_length=16)
    blocked_by: int | None = Field(default=None, sa_column=sa.Column(_INT64, nullable=True))
    parked_at: datetime
    replayed_at: datetime | None = None
    # Handler runs that failed (0 for a message parked behind another without running).
    attempts: int = Field(default=0, sa_type=_INT64)


DEAD_LETTERS = table(DeadLetter)
_INBOX = table(InboxMessage)
_SEEN = ByKeys(_INBOX.c.message_id, _INBOX.c.message_id)
_NEW_INBOX = Prepared(sa.insert(_INBOX))
def _batch_facts(in_list: Callable[[Any, str], Any], listed: Callable[[str], Any]) -> Prepared:
    """Which of a batch's messages were applied already (in the inbox: `applied`), and the PARKED dead letters
    that are one of them or share a key with one on the batch's topic: the two reads every consumed batch makes
    (usually answering nothing), as one statement. The batch's ids and keys are one parameter each
    (`in_list(column, name)`; `listed(name)`, the list as a one-column table), so that one statement serves
    every batch: a statement per pair of list lengths (IN lists) multiplied into hundreds of shapes, each
    compiled, then prepared on each connection, crowding the hot statements out of the connection's statement
    cache.

    The inbox is asked once per id, by its key (a correlated subquery): PostgreSQL caches one plan for a statement
    run often, made while the table was still empty on a fresh instance, and `message_id = ANY(ids)` then stayed a
    sequential scan of the whole inbox for every batch until autovacuum's next ANALYZE, up to minutes later (a
    quarter of a core at 200 transfers/s, issue 9). A lookup per id is planned on the key whatever the table
    holds."""
    parked = sa.select(DEAD_LETTERS.c.message_id, DEAD_LETTERS.c.id, DEAD_LETTERS.c.topic, DEAD_LETTERS.c.key,
                       sa.literal(False).label("applied")).where(
        DEAD_LETTERS.c.state == PARKED,
        sa.or_(in_list(DEAD_LETTERS.c.message_id, "ids"),
               sa.and_(DEAD_LETTERS.c.topic == sa.bindparam("topic"), in_list(DEAD_LETTERS.c.key, "keys"))))
    ids = listed("ids")
    batch_id = next(iter(ids.c))
    in_inbox = sa.select(sa.true()).where(_INBOX.c.message_id == batch_id).scalar_subquery()
    applied = sa.select(batch_id, sa.null(), sa.null(), sa.null(), sa.literal(True)).select_from(ids).where(in_inbox)
    return Prepared(sa.select(sa.union_all(parked, applied).subquery("facts")))


def _unnested(name: str) -> Any:
    listed = sa.func.unnest(sa.bindparam(name, type_=postgresql.ARRAY(sa.Text()))).table_valued("id")
    return listed.render_derived(name=name)


def _json_each(name: str) -> Any:
    return sa.func.json_each(sa.bindparam(name, type_=sa.Text())).table_valued("value").alias(name)


_BATCH_FACTS_POSTGRESQL = _batch_facts(
    lambda column, name: column == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(sa.Text()))), _unnested)
# SQLite: the list as a JSON array, read by json_each.
_BATCH_FACTS_SQLITE = _batch_facts(lambda column, name: column.in_(sa.select(_json_each(name).c.value)), _json_each)


async def _facts_of_batch(uow: UnitOfWork, ids: list[str], topic: str | None, keys: list[str]) -> list[Any]:
    if uow.shares_rows:
        return list(await uow.execute(_BATCH_FACTS_POSTGRESQL, {"ids": ids, "topic": topic, "keys": keys}))
    return list(await uow.execute(_BATCH_FACTS_SQLITE, {"ids": json.dumps(ids), "topic": topic,
                                                        "keys": json.dumps(keys)}))


_INSERT = sa.insert(DEAD_LETTERS).returning(DEAD_LETTERS.c.id)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One consumed Kafka record: where it came from, its key, its bytes, and its envelope (None when no
    schema reads it; `decode_error` says why, and also when the envelope reads but its payload does not)."""

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    envelope: Envelope | None
    decode_error: str | None = None

    @property
    def message_id(self) -> str:
        if self.envelope is not None:
            return self.envelope.id
        return f"kafka:{self.topic}:{self.partition}:{self.offset}"

    @property
    def where(self) -> str:
        """For log lines: the record's place, never its key or payload (those may name a person)."""
        return f"{self.topic}[{self.partition}]@{self.offset}"


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX_CHARS]


# ------------------------------------------------------------------------------------------ inbox dedupe


async def inbox_seen(uow: UnitOfWork, ids: list[str]) -> set[str]:
    return {row.message_id for row in await _SEEN.rows(uow, ids)}


async def remember_applied(uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """Deferred (UnitOfWork.defer): written with the handler's own rows as the transaction commits, one round
    trip fewer per batch. A replica that applied one of them meanwhile then fails the commit instead of this
    insert, and the whole transaction runs again (run_retrying) and finds it applied."""
    now = datetime.now(UTC)
    for envelope in envelopes:
        uow.defer(_NEW_INBOX, {"message_id": envelope.id, "message_type": envelope.type, "received_at": now})


# Ids forgotten per transaction: short transactions, so that the consumers' inserts never wait long.
INBOX_FORGET_BATCH = 5_000


def oldest_inbox_ids(before: datetime) -> sa.Select[tuple[str]]:
    """A batch of the ids applied before `before`, oldest first: a plan that walks the index on received_at (a
    plain LIMIT let PostgreSQL plan a sequential scan, which reads the whole inbox once nothing old is left)."""
    old = _INBOX.alias("old")  # not correlated with the table deleted from
    return (sa.select(old.c.message_id).where(old.c.received_at < before).order_by(old.c.received_at)
            .limit(INBOX_FORGET_BATCH))


async def forget_old_inbox_ids(db: Database, retention_s: float) -> int:
    """Delete the ids of messages applied more than `retention_s` ago (the `inbox-retention` job, one replica
    at a time), a batch per transaction; returns how many. Safe because no message can come again after that
    long: Kafka keeps a record 7 days (the topics' default retention, which the launcher keeps), and a consumer
    group whose offsets expired (also after 7 days unused) reads again from the oldest record kept. A message
    parked as a dead letter was not applied, so it has no id here to lose; it is recorded when replayed."""
    oldest = oldest_inbox_ids(datetime.now(UTC) - timedelta(seconds=retention_s))
    forgotten = 0
    while True:
        async with UnitOfWork(db) as uow:
            if not await uow.lead("inbox-retention"):
                return forgotten
            deleted = int((await uow.execute(sa.delete(_INBOX).where(_INBOX.c.message_id.in_(oldest)))).rowcount)
            await uow.commit()
        forgotten += deleted
        if deleted < INBOX_FORGET_BATCH:
            return forgotten


# ------------------------------------------------------------------------------------------ consuming


async def _park(uow: UnitOfWork, item: Inbound, *, error: str, blocked_by: int | None, attempts: int) -> int:
    values = {"message_id": item.message_id, "topic": item.topic, "partition": item.partition,
              "offset": item.offset, "key": item.key,
              "message_type": item.envelope.type if item.envelope is not None else None, "payload": item.value,
              "error": error[:ERROR_MAX_CHARS], "state": PARKED, "blocked_by": blocked_by,
              "parked_at": datetime.now(UTC), "attempts": attempts}
    parked_id = int((await uow.execute(_INSERT, values)).scalar_one())
    log.error("message %s of type %s parked as dead letter %d (%s)", item.where, values["message_type"], parked_id,
              f"waiting behind dead letter {blocked_by}" if blocked_by is not None else "failed")
    return parked_id


async def _head(uow: UnitOfWork, topic: str, key: str | None) -> int | None:
    if key is None:
        return None
    head = (await uow.execute(sa.select(sa.func.min(DEAD_LETTERS.c.id)).where(
        DEAD_LETTERS.c.topic == topic, DEAD_LETTERS.c.key == key, DEAD_LETTERS.c.state == PARKED))).scalar()
    return int(head) if head is not None else None


async def apply_inbound(uow: UnitOfWork, items: Sequence[Inbound], handler: Handler) -> int:
    """Apply consumed records in this unit of work, in order: drop those already applied (inbox) or already
    parked (a redelivery); park, without running the handler, those whose key waits behind a PARKED dead letter
    and those no schema reads; hand the rest to `handler` and remember them in the inbox. Returns how many were
    parked. Raises what the handler raises (the caller rolls back and retries or parks; see ConsumerLoop)."""
    keys_by_topic: dict[str, set[str]] = {}
    for item in items:
        if item.key is not None:
            keys_by_topic.setdefault(item.topic, set()).add(item.key)
    ids = list(dict.fromkeys(item.message_id for item in items))
    topics: list[str | None] = [*sorted(keys_by_topic)] or [None]
    facts: list[Any] = []
    for number, topic in enumerate(topics):  # one topic, unless a test hands over several
        keys = sorted(keys_by_topic[topic]) if topic is not None else []
        facts += await _facts_of_batch(uow, ids if number == 0 else [], topic, keys)
    seen = {row.message_id for row in facts if row.applied}
    heads: dict[tuple[str, str], int] = {}
    already_parked: set[str] = set()
    for row in facts:
        if row.applied:
            continue
        already_parked.add(row.message_id)
        if row.key is not None:
            where = (row.topic, row.key)
            heads[where] = min(heads.get(where, int(row.id)), int(row.id))  # the head: the oldest PARKED

    fresh: list[Envelope] = []
    parked = 0
    for item in items:
        message_id = item.message_id
        if message_id in seen or message_id in already_parked:
            continue
        seen.add(message_id)  # a repeat within the batch
        head = heads.get((item.topic, item.key)) if item.key is not None else None
        if head is not None:
            await _park(uow, item, error=f"waiting behind dead letter {head} (same key)", blocked_by=head,
                        attempts=0)
            parked += 1
        elif item.envelope is None or item.decode_error is not None:
            new_head = await _park(uow, item, error=f"undecodable: {item.decode_error or 'no schema reads it'}",
                                   blocked_by=None, attempts=1)
            parked += 1
            if item.key is not None:
                heads[(item.topic, item.key)] = new_head
        else:
            fresh.append(item.envelope)
    if fresh:
        await remember_applied(uow, fresh)
        await handler(uow, fresh)
    return parked


async def park_failed(uow: UnitOfWork, item: Inbound, error: str, attempts: int) -> int | None:
    """Park a message whose handler failed every retry (its own unit of work: what the handler did was rolled
    back). If a PARKED dead letter of its key exists meanwhile (another replica), it waits behind it. None when
    it is already parked (a redelivery, or a replica that got there first)."""
    existing = (await uow.execute(sa.select(DEAD_LETTERS.c.id).where(
        DEAD_LETTERS.c.message_id == item.message_id))).first()
    if existing is not None:
        return None
    return await _park(uow, item, error=error, blocked_by=await _head(uow, item.topic, item.key), attempts=attempts)


# ------------------------------------------------------------------------------------------ operators


def view(row: Any) -> dict[str, Any]:
    return {"id": int(row.id), "topic": row.topic, "partition": int(row.partition), "offset": int(row.offset),
            "key": row.key, "message_type": row.message_type, "message_id": row.message_id, "error": row.error,
            "state": row.state, "parked_at": iso(row.parked_at),
            "replayed_at": iso(row.replayed_at) if row.replayed_at is not None else None,
            "blocked_by": int(row.blocked_by) if row.blocked_by is not None else None,
            "attempts": int(row.attempts)}


_LISTED = [c for c in DEAD_LETTERS.c if c.name != "payload"]


def parse_state(state: str | None) -> str | None:
    if state is None or state == "":
        return None
    wanted = state.upper()
    if wanted not in STATES:
        raise ApiError(422, "INVALID_STATE", "state is PARKED or REPLAYED")
    return wanted


async def list_dead_letters(db: Database, state: str | None = None) -> list[dict[str, Any]]:
    """Oldest first, at most LIST_LIMIT (PARKED ones are what operators act on: filter with state)."""
    wanted = parse_state(state)
    query = sa.select(*_LISTED).order_by(DEAD_LETTERS.c.id).limit(LIST_LIMIT)
    if wanted is not None:
        query = query.where(DEAD_LETTERS.c.state == wanted)
    async with ReadView(db) as reader:
        return [view(row) for row in (await reader.execute(query)).all()]


async def count_parked(db: Database) -> int:
    async with ReadView(db) as reader:
        return int((await reader.execute(
            sa.select(sa.func.count()).select_from(DEAD_LETTERS).where(DEAD_LETTERS.c.state == PARKED))).scalar_one())


def _decode_row(row: Any) -> Envelope:
    return Envelope.from_bytes(bytes(row.payload))


async def _replay_one(db: Database, handler: Handler, row: Any) -> str | None:
    """Apply one dead letter in one unit of work (inbox dedupe inside), marking it REPLAYED in the same unit.
    None on success; the error text when it failed again (then nothing it did is kept)."""

    async def attempt() -> None:
        async with UnitOfWork(db) as uow:
            claimed = await uow.execute(
                sa.update(DEAD_LETTERS).where(DEAD_LETTERS.c.id == row.id, DEAD_LETTERS.c.state == PARKED)
                .values(state=REPLAYED, replayed_at=datetime.now(UTC), blocked_by=None))
            if claimed.rowcount != 1:
                return  # another replica (or request) replayed it meanwhile: applied once, by that one
            envelope = _decode_row(row)
            if not await inbox_seen(uow, [envelope.id]):
                await remember_applied(uow, [envelope])
                await handler(uow, [envelope])
            await uow.commit()
        log.info("dead letter %d replayed", row.id)

    try:
        # A transaction that merely lost a race with a concurrent one runs again, as everywhere; any other
        # failure is the message's and is recorded.
        await run_retrying(attempt)
        return None
    except Exception as exc:
        error = error_text(exc)
        log.error("replaying dead letter %d (%s) failed again: %s", row.id, row.message_type, type(exc).__name__)
        async with UnitOfWork(db) as uow:
            # It is now the head of its key: the ones behind it wait for it.
            await uow.execute(sa.update(DEAD_LETTERS).where(DEAD_LETTERS.c.id == row.id,
                                                            DEAD_LETTERS.c.state == PARKED)
                              .values(error=error, attempts=DEAD_LETTERS.c.attempts + 1, blocked_by=None))
            if row.key is not None:
                await uow.execute(sa.update(DEAD_LETTERS).where(
                    DEAD_LETTERS.c.topic == row.topic, DEAD_LETTERS.c.key == row.key,
                    DEAD_LETTERS.c.state == PARKED, DEAD_LETTERS.c.id > row.id).values(blocked_by=row.id))
            await uow.commit()
        return error


async def _load(db: Database, dead_letter_id: int) -> Any:
    async with ReadView(db) as reader:
        return (await reader.execute(sa.select(DEAD_LETTERS).where(DEAD_LETTERS.c.id == dead_letter_id))).first()


async def _next_behind(db: Database, row: Any) -> Any:
    """The first PARKED dead letter of the same key after `row` (re-read each step: the consumer may park more
    behind the chain while it drains)."""
    if row.key is None:
        return None
    async with ReadView(db) as reader:
        return (await reader.execute(sa.select(DEAD_LETTERS).where(
            DEAD_LETTERS.c.topic == row.topic, DEAD_LETTERS.c.key == row.key, DEAD_LETTERS.c.state == PARKED,
            DEAD_LETTERS.c.id > row.id).order_by(DEAD_LETTERS.c.id).limit(1))).first()


async def _parked_ids_from(db: Database, row: Any) -> list[int]:
    query = sa.select(DEAD_LETTERS.c.id).where(DEAD_LETTERS.c.state == PARKED)
    if row.key is None:
        query = query.where(DEAD_LETTERS.c.id == row.id)
    else:
        query = query.where(DEAD_LETTERS.c.topic == row.topic, DEAD_LETTERS.c.key == row.key,
                            DEAD_LETTERS.c.id >= row.id)
    async with ReadView(db) as reader:
        return [int(r.id) for r in (await reader.execute(query.order_by(DEAD_LETTERS.c.id))).all()]


async def replay(db: Database, handler: Handler | None, dead_letter_id: int) -> dict[str, Any]:
    """Replay a PARKED head and then those waiting behind it (module docstring). Answers
    `{id, state, replayed, still_parked, error?}`; `state` is that of `dead_letter_id` afterwards."""
    row = await _load(db, dead_letter_id)
    if row is None:
        raise ApiError(404, "DEAD_LETTER_NOT_FOUND", f"no dead letter {dead_letter_id}")
    if row.state == REPLAYED:
        raise ApiError(409, "DEAD_LETTER_ALREADY_REPLAYED", f"dead letter {dead_letter_id} was replayed already")
    head = await _head_before(db, row)
    if head is not None:
        raise ApiError(409, "DEAD_LETTER_BLOCKED",
                       f"dead letter {dead_letter_id} waits behind dead letter {head} (same key): replay that one")
    if handler is None:
        raise ApiError(503, "DEAD_LETTER_REPLAY_UNAVAILABLE", "this service consumes nothing now")
    replayed: list[int] = []
    error: str | None = None
    current = row
    while current is not None:
        error = await _replay_one(db, handler, current)
        if error is not None:
            break
        replayed.append(int(current.id))
        current = await _next_behind(db, current)
    still_parked = await _parked_ids_from(db, row)
    answer: dict[str, Any] = {"id": dead_letter_id, "state": PARKED if dead_letter_id in still_parked else REPLAYED,
                              "replayed": replayed, "still_parked": still_parked}
    if error is not None:
        answer["error"] = error
    return answer


async def _head_before(db: Database, row: Any) -> int | None:
    if row.key is None:
        return None
    async with ReadView(db) as reader:
        head = (await reader.execute(sa.select(sa.func.min(DEAD_LETTERS.c.id)).where(
            DEAD_LETTERS.c.topic == row.topic, DEAD_LETTERS.c.key == row.key, DEAD_LETTERS.c.state == PARKED,
            DEAD_LETTERS.c.id < row.id))).scalar()
    return int(head) if head is not None else None
