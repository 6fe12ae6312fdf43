"""The node's transfer rows, both ends: `transfers_out` (what this node's persons sent) and `transfers_in` (what
arrived for them). Every read returns a typed row; every change of state is here, and each one keeps the guard
it needs under replicas: rows a decision reads are read `FOR UPDATE`, and a change that does not read first is
an UPDATE guarded by the state it leaves (`WHERE state = ...`), whose rowcount says whether it happened."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from services.province_node.adapters import binding_repo
from services.province_node.adapters.binding_repo import BindingRow
from services.province_node.adapters.tables import Account, BindingReplica, Person, TransferIn, TransferOut
from services.province_node.domain.transfer_lifecycle import ReceivedState, SentState
from shared.db import Prepared, ReadView, UnitOfWork, for_update
from shared.tables import table

OUT = table(TransferOut)
IN = table(TransferIn)
PERSONS, ACCOUNTS, BINDINGS = table(Person), table(Account), table(BindingReplica)


class SentTransfer(NamedTuple):
    transfer_id: str
    binding_id: str
    giver_psn_no: str
    receiver_psn_no: str
    receiver_admdvs: str
    amount_fen: int
    state: SentState
    reason: str | None
    accepted_day: str
    accepted_at: datetime
    credited_at: datetime | None
    settled_at: datetime | None  # when the hub's decision closed it (the column keeps its stored name)


class ReceivedTransfer(NamedTuple):
    transfer_id: str
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    receiver_psn_no: str
    amount_fen: int
    state: ReceivedState
    reason: str | None
    accepted_at: datetime
    credited_at: datetime | None
    accept_by: datetime | None


_SENT_COLUMNS = [OUT.c[name] for name in SentTransfer._fields]
_RECEIVED_COLUMNS = [IN.c[name] for name in ReceivedTransfer._fields]
_SENT_STATE = SentTransfer._fields.index("state")
_RECEIVED_STATE = ReceivedTransfer._fields.index("state")


def _sent(row: Any) -> SentTransfer:
    values = list(row)
    values[_SENT_STATE] = SentState(values[_SENT_STATE])
    return SentTransfer._make(values)


def _received(row: Any) -> ReceivedTransfer:
    values = list(row)
    values[_RECEIVED_STATE] = ReceivedState(values[_RECEIVED_STATE])
    return ReceivedTransfer._make(values)


# Built once, and run straight on the driver inside a unit of work (shared/db/statements.py Prepared): the
# transfer path's statements, at the giver's and the receiver's node for every transfer.
_SENT_ON_DAY = Prepared(sa.select(sa.func.count()).select_from(OUT).where(
    OUT.c.giver_psn_no == sa.bindparam("giver"), OUT.c.accepted_day == sa.bindparam("day")))
_NEW_SENT = Prepared(sa.insert(OUT))
_SENT_LOCKED = Prepared(for_update(sa.select(*_SENT_COLUMNS).where(OUT.c.transfer_id == sa.bindparam("transfer_id"))))
_GIVER_OF = Prepared(sa.select(OUT.c.giver_psn_no).where(OUT.c.transfer_id == sa.bindparam("transfer_id")))
# `b_` names keep the key apart from the columns an UPDATE sets.
_SENT_CHANGE = Prepared(sa.update(OUT).where(OUT.c.transfer_id == sa.bindparam("b_transfer_id")))
_SENT_MOVE = Prepared(sa.update(OUT).where(OUT.c.transfer_id == sa.bindparam("b_transfer_id"),
                                           OUT.c.state == sa.bindparam("b_state")))
_NEW_RECEIVED = Prepared(sa.insert(IN))
_RECEIVED_LOCKED = Prepared(for_update(sa.select(*_RECEIVED_COLUMNS).where(
    IN.c.transfer_id == sa.bindparam("transfer_id"))))
_RECEIVED_BY = Prepared(sa.select(*_RECEIVED_COLUMNS).where(IN.c.transfer_id == sa.bindparam("transfer_id")))
_RECEIVED_CHANGE = Prepared(sa.update(IN).where(IN.c.transfer_id == sa.bindparam("b_transfer_id")))


# ----------------------------------------------------------------------------------------------- sent


class SendFacts(NamedTuple):
    """What a send is checked against before the day's count, read in one statement (`send_facts`)."""

    binding: BindingRow | None
    insured: bool | None  # None: no such person here
    personal_account_fen: int | None  # locked; None: no such account


def _send_facts() -> Any:
    locked = for_update(sa.select(ACCOUNTS.c.balance_fen).where(
        ACCOUNTS.c.account_id == sa.bindparam("personal_account"))).cte("locked")
    # One row whether or not the binding exists: the facts left-joined to it.
    one = sa.select(sa.literal(1).label("one")).subquery("one")
    return sa.select(
        *binding_repo.COLUMNS,
        sa.select(PERSONS.c.insured).where(PERSONS.c.psn_no == sa.bindparam("psn_no")).scalar_subquery()
        .label("insured"),
        sa.select(locked.c.balance_fen).scalar_subquery().label("personal_account_fen"),
    ).select_from(one.outerjoin(BINDINGS, BINDINGS.c.binding_id == sa.bindparam("binding_id")))


_SEND_FACTS = Prepared(_send_facts())


async def send_facts(uow: UnitOfWork, *, binding_id: str, giver_psn_no: str, personal_account: str) -> SendFacts:
    """The binding, whether the giver is insured, and the giver's personal account, its row locked until the
    transaction ends: one statement where there were three round trips. The day's count is read after it
    (`count_sent_on`), in a statement of its own: one begun after the lock was granted sees the transfers a send
    that held it before committed (this statement's snapshot was taken before it waited)."""
    row = (await uow.execute(_SEND_FACTS, {"binding_id": binding_id, "psn_no": giver_psn_no,
                                           "personal_account": personal_account})).one()
    return SendFacts(
        binding=None if row.binding_id is None else binding_repo.binding_of(row),
        insured=None if row.insured is None else bool(row.insured),
        personal_account_fen=None if row.personal_account_fen is None else int(row.personal_account_fen))


async def count_sent_on(uow: UnitOfWork, giver_psn_no: str, day: str) -> int:
    """The giver's transfers accepted on `day` (Asia/Shanghai), for the daily limit."""
    return int((await uow.execute(_SENT_ON_DAY, {"giver": giver_psn_no, "day": day})).scalar_one())


async def add_sent(uow: UnitOfWork, transfer: SentTransfer) -> None:
    """Written as the transaction commits, with its other deferred rows (UnitOfWork.defer): nothing reads a new
    transfer back in the request that sends it, and the giver's next send counts it once committed (its row
    lock on the giver's account waits for this commit)."""
    uow.defer(_NEW_SENT, transfer._asdict())


async def sent_for_update(uow: UnitOfWork, transfer_id: str) -> SentTransfer | None:
    """Locked: the hub's decision and anything else deciding this transfer take turns (replicas too)."""
    row = (await uow.execute(_SENT_LOCKED, {"transfer_id": transfer_id})).first()
    return None if row is None else _sent(row)


async def close_sent(uow: UnitOfWork, transfer_id: str, state: SentState, *, reason: str | None,
                     credited_at: datetime | None, closed_at: datetime) -> None:
    """The hub's decision, on a row read with `sent_for_update`."""
    values: dict[str, Any] = {"state": state, "settled_at": closed_at}
    if state == SentState.CREDITED:
        values["credited_at"] = credited_at
    else:
        values["reason"] = reason
    await uow.execute(_SENT_CHANGE, {"b_transfer_id": transfer_id, **values})


async def move_sent(uow: UnitOfWork, transfer_id: str, from_state: SentState, to_state: SentState,
                    reason: str | None) -> bool:
    """Guarded by the state it leaves: True when the row was in `from_state` and now is in `to_state`."""
    changed = await uow.execute(_SENT_MOVE, {"b_transfer_id": transfer_id, "b_state": from_state,
                                             "state": to_state, "reason": reason})
    return bool(changed.rowcount == 1)


async def giver_of(uow: UnitOfWork, transfer_id: str) -> str | None:
    row = (await uow.execute(_GIVER_OF, {"transfer_id": transfer_id})).first()
    return None if row is None else str(row.giver_psn_no)


async def sent_by(view: ReadView, giver_psn_no: str, transfer_id: str) -> SentTransfer | None:
    row = (await view.execute(sa.select(*_SENT_COLUMNS).where(OUT.c.transfer_id == transfer_id,
                                                              OUT.c.giver_psn_no == giver_psn_no))).first()
    return None if row is None else _sent(row)


async def sent_of(view: ReadView, giver_psn_no: str) -> list[SentTransfer]:
    rows = await view.execute(sa.select(*_SENT_COLUMNS).where(OUT.c.giver_psn_no == giver_psn_no)
                              .order_by(OUT.c.accepted_at))
    return [_sent(row) for row in rows]


# ------------------------------------------------------------------------------------------- received


class ArrivalFacts(NamedTuple):
    """What a credit arriving here is decided on, read in one statement (issue 9: four round trips before)."""

    received_state: ReceivedState | None  # not None: already decided here, the first decision stands
    insured: bool | None  # None: no such person here
    wallet_open: bool
    binding_state: str | None  # this node's replica of the binding, None when it has none


_ARRIVAL_FACTS = Prepared(sa.select(
    sa.select(IN.c.state).where(IN.c.transfer_id == sa.bindparam("transfer_id")).scalar_subquery()
    .label("received_state"),
    sa.select(sa.func.coalesce(PERSONS.c.insured, sa.false())).where(PERSONS.c.psn_no == sa.bindparam("psn_no"))
    .scalar_subquery().label("insured"),
    sa.exists().where(ACCOUNTS.c.account_id == sa.bindparam("wallet")).label("wallet_open"),
    sa.select(BINDINGS.c.state).where(BINDINGS.c.binding_id == sa.bindparam("binding_id")).scalar_subquery()
    .label("binding_state")))


async def arrival_facts(uow: UnitOfWork, *, transfer_id: str, receiver_psn_no: str, wallet_account: str,
                        binding_id: str) -> ArrivalFacts:
    """Not locked: a transfer once decided here stays decided (the hub's messages for it come in order)."""
    row = (await uow.execute(_ARRIVAL_FACTS, {"transfer_id": transfer_id, "psn_no": receiver_psn_no,
                                              "wallet": wallet_account, "binding_id": binding_id})).one()
    return ArrivalFacts(
        received_state=None if row.received_state is None else ReceivedState(row.received_state),
        insured=None if row.insured is None else bool(row.insured), wallet_open=bool(row.wallet_open),
        binding_state=row.binding_state)


async def add_received(uow: UnitOfWork, transfer: ReceivedTransfer) -> None:
    await uow.execute(_NEW_RECEIVED, transfer._asdict())


async def received_for_update(uow: UnitOfWork, transfer_id: str) -> ReceivedTransfer | None:
    """Locked: the receiver's acceptance, the expiry scan and the hub's cancel take turns on the row (one of them
    ends a held transfer; replicas too)."""
    row = (await uow.execute(_RECEIVED_LOCKED, {"transfer_id": transfer_id})).first()
    return None if row is None else _received(row)


async def set_received(uow: UnitOfWork, transfer_id: str, state: ReceivedState, *, reason: str | None = None,
                       credited_at: datetime | None = None) -> None:
    """A held transfer's end, on a row locked by `received_for_update` or `awaiting_past`."""
    values: dict[str, Any] = {"state": state}
    if state == ReceivedState.CREDITED:
        values["credited_at"] = credited_at
    else:
        values["reason"] = reason
    await uow.execute(_RECEIVED_CHANGE, {"b_transfer_id": transfer_id, **values})


async def received(uow: UnitOfWork, transfer_id: str) -> ReceivedTransfer:
    return _received((await uow.execute(_RECEIVED_BY, {"transfer_id": transfer_id})).one())


async def awaiting_past(uow: UnitOfWork, now: datetime, limit: int) -> list[str]:
    """Held transfers whose accept_by has passed, locked; rows another transaction holds are skipped (an
    acceptance deciding them now), and looked at again next round."""
    rows = (await uow.execute(sa.select(IN.c.transfer_id).where(
        IN.c.state == ReceivedState.AWAITING_ACCEPTANCE, IN.c.accept_by <= now)
        .limit(limit).with_for_update(skip_locked=True))).all()
    return [str(row.transfer_id) for row in rows]


async def received_by(view: ReadView, receiver_psn_no: str, transfer_id: str,
                      states: Iterable[ReceivedState]) -> ReceivedTransfer | None:
    row = (await view.execute(sa.select(*_RECEIVED_COLUMNS).where(
        IN.c.transfer_id == transfer_id, IN.c.state.in_(list(states)), IN.c.receiver_psn_no == receiver_psn_no))
    ).first()
    return None if row is None else _received(row)


async def received_for_person(uow: UnitOfWork, receiver_psn_no: str, transfer_id: str) -> ReceivedTransfer | None:
    """Locked, like `received_for_update`, and only the receiver's own."""
    row = (await uow.execute(for_update(sa.select(*_RECEIVED_COLUMNS).where(
        IN.c.transfer_id == transfer_id, IN.c.receiver_psn_no == receiver_psn_no)))).first()
    return None if row is None else _received(row)


async def received_of(view: ReadView, receiver_psn_no: str, states: Iterable[ReceivedState]) -> list[ReceivedTransfer]:
    rows = await view.execute(sa.select(*_RECEIVED_COLUMNS).where(
        IN.c.receiver_psn_no == receiver_psn_no, IN.c.state.in_(list(states))).order_by(IN.c.accepted_at))
    return [_received(row) for row in rows]
