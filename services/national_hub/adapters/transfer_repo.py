"""The hub's transfer rows (`hub_transfers`), their hops (`transfer_hops`, the trace) and the obligations a
credited transfer leaves for clearing. Reads return typed rows. Every change of state keeps the guard it needs
under replicas: a decision reads the row `FOR UPDATE` first (`locked`, then `decide`), and a change made
without reading is an UPDATE guarded by the state it leaves (`move`), whose rowcount says whether it happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from services.national_hub.adapters import binding_repo
from services.national_hub.adapters.binding_repo import BindingRow
from services.national_hub.adapters.tables import ClearingObligation, HubTransfer, TransferHop
from services.national_hub.domain.transfer_state import Move, TransferState
from shared.db import Prepared, ReadView, UnitOfWork, for_update
from shared.tables import table

TRANSFERS = table(HubTransfer)
HOPS = table(TransferHop)
OBLIGATIONS = table(ClearingObligation)


class HubTransferRow(NamedTuple):
    transfer_id: str
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    receiver_psn_no: str
    receiver_admdvs: str
    amount_fen: int
    state: TransferState
    reason: str | None
    accepted_at: datetime
    routed_at: datetime
    deadline_at: datetime
    decided_at: datetime | None


class CancelTarget(NamedTuple):
    """A ROUTED transfer the hub may ask its destination to cancel."""

    transfer_id: str
    receiver_admdvs: str
    receiver_psn_no: str


class ArrivalFacts(NamedTuple):
    """What the hub reads when a transfer arrives, in one round trip (`arrival_facts`)."""

    known_state: TransferState | None  # the transfer's state if it arrived before
    binding: BindingRow | None
    from_giver: int  # transfers the giver sent, accepted within the window asked for
    to_receiver: int  # transfers to the receiver, likewise


class Hop(NamedTuple):
    hop: str
    service: str
    at: datetime


_COLUMNS = [TRANSFERS.c[name] for name in HubTransferRow._fields]
_STATE = HubTransferRow._fields.index("state")


def _transfer(row: Any) -> HubTransferRow:
    values = list(row)
    values[_STATE] = TransferState(values[_STATE])
    return HubTransferRow._make(values)


# Hot-path statements, built once and Prepared (shared/db/): run straight on the driver for every transfer.
_NEW_HOP = Prepared(sa.insert(HOPS))
_NEW_TRANSFER = Prepared(sa.insert(TRANSFERS))
# Locked: a result and the timeout scan (on another replica, perhaps) decide one transfer one after another.
_LOCKED_BY_ID = Prepared(for_update(sa.select(*_COLUMNS).where(
    TRANSFERS.c.transfer_id == sa.bindparam("transfer_id"))))
_DECIDE = Prepared(sa.update(TRANSFERS).where(TRANSFERS.c.transfer_id == sa.bindparam("b_transfer_id")).values(
    state=sa.bindparam("b_state"), reason=sa.bindparam("b_reason"), decided_at=sa.bindparam("b_decided_at")))
_NEW_OBLIGATION = Prepared(sa.insert(OBLIGATIONS))


def _arrival_facts() -> Any:
    def accepted_in_window(party: sa.Column[Any], value: str) -> Any:
        return sa.select(sa.func.count()).select_from(TRANSFERS).where(
            party == sa.bindparam(value), TRANSFERS.c.accepted_at >= sa.bindparam("since"),
            TRANSFERS.c.accepted_at <= sa.bindparam("until")).scalar_subquery()

    # One row whether or not the binding exists: the facts left-joined to it. Each count runs over its own index.
    one = sa.select(sa.literal(1).label("one")).subquery("one")
    return sa.select(
        *binding_repo.COLUMNS,
        sa.select(TRANSFERS.c.state).where(TRANSFERS.c.transfer_id == sa.bindparam("transfer_id"))
        .scalar_subquery().label("known_state"),
        accepted_in_window(TRANSFERS.c.giver_psn_no, "giver").label("from_giver"),
        accepted_in_window(TRANSFERS.c.receiver_psn_no, "receiver").label("to_receiver"),
    ).select_from(one.outerjoin(binding_repo.BINDINGS,
                                binding_repo.BINDINGS.c.binding_id == sa.bindparam("binding_id")))


_ARRIVAL_FACTS = Prepared(_arrival_facts())


async def arrival_facts(uow: UnitOfWork, *, transfer_id: str, binding_id: str, giver_psn_no: str,
                        receiver_psn_no: str, since: datetime, until: datetime) -> ArrivalFacts:
    """A transfer's state if known, its binding, and the counts the frequency rule judges (accepted in
    [since, until]), in one statement: they were three round trips for every transfer the hub routes."""
    row = (await uow.execute(_ARRIVAL_FACTS, {
        "transfer_id": transfer_id, "binding_id": binding_id, "giver": giver_psn_no, "receiver": receiver_psn_no,
        "since": since, "until": until})).one()
    known = None if row.known_state is None else TransferState(row.known_state)
    binding = None if row.binding_id is None else binding_repo.binding_of(row)
    return ArrivalFacts(known, binding, int(row.from_giver), int(row.to_receiver))


async def add(uow: UnitOfWork, transfer: HubTransferRow) -> None:
    await uow.execute(_NEW_TRANSFER, transfer._asdict())


async def locked(uow: UnitOfWork, transfer_id: str) -> HubTransferRow | None:
    row = (await uow.execute(_LOCKED_BY_ID, {"transfer_id": transfer_id})).first()
    return None if row is None else _transfer(row)


async def decide(uow: UnitOfWork, transfer_id: str, state: TransferState, reason: str | None,
                 decided_at: datetime) -> None:
    """A final state, on a row read with `locked`."""
    await uow.execute(_DECIDE, {"b_transfer_id": transfer_id, "b_state": state, "b_reason": reason,
                                "b_decided_at": decided_at})


async def move(uow: UnitOfWork, transfer_id: str, change: Move, **values: Any) -> bool:
    """Guarded by the state it leaves: True when the row was in `change.from_state` and now is in
    `change.to_state` (with `values` set); False when a decision made meanwhile (another replica) keeps it."""
    moved = await uow.execute(sa.update(TRANSFERS).where(
        TRANSFERS.c.transfer_id == transfer_id, TRANSFERS.c.state == change.from_state).values(
        state=change.to_state, **values))
    return bool(moved.rowcount == 1)


async def move_deadline(uow: UnitOfWork, transfer_id: str, *, while_in: TransferState, deadline_at: datetime) -> bool:
    """Guarded by the state: True when the row was (and stays) in `while_in` and now has this deadline."""
    moved = await uow.execute(sa.update(TRANSFERS).where(
        TRANSFERS.c.transfer_id == transfer_id, TRANSFERS.c.state == while_in).values(deadline_at=deadline_at))
    return bool(moved.rowcount == 1)


async def state_and_deadline(uow: UnitOfWork, transfer_id: str) -> tuple[TransferState, datetime] | None:
    row = (await uow.execute(sa.select(TRANSFERS.c.state, TRANSFERS.c.deadline_at).where(
        TRANSFERS.c.transfer_id == transfer_id))).first()
    return None if row is None else (TransferState(row.state), row.deadline_at)


_CANCEL_TARGETS = sa.select(*(TRANSFERS.c[name] for name in CancelTarget._fields))


async def overdue(uow: UnitOfWork, now: datetime, limit: int) -> list[CancelTarget]:
    """ROUTED transfers past their deadline, locked; rows a result is deciding right now are skipped (locked
    elsewhere) and looked at again next round."""
    rows = (await uow.execute(_CANCEL_TARGETS.where(
        TRANSFERS.c.state == TransferState.ROUTED, TRANSFERS.c.deadline_at < now).limit(limit)
        .with_for_update(skip_locked=True))).all()
    return [CancelTarget._make(row) for row in rows]


async def routed_of_binding(uow: UnitOfWork, binding_id: str) -> list[CancelTarget]:
    """The binding's transfers still on their way (ix_hub_transfers_state_deadline finds the few ROUTED ones;
    the binding is matched among them)."""
    rows = (await uow.execute(_CANCEL_TARGETS.where(
        TRANSFERS.c.binding_id == binding_id, TRANSFERS.c.state == TransferState.ROUTED))).all()
    return [CancelTarget._make(row) for row in rows]


async def add_hop(uow: UnitOfWork, transfer_id: str, hop: str, service: str, at: datetime) -> None:
    # Nothing reads hops back in the transaction: written as it commits, with the batch's others (one statement).
    uow.defer(_NEW_HOP, {"transfer_id": transfer_id, "hop": hop, "service": service, "at": at})


async def add_obligation(uow: UnitOfWork, transfer: HubTransferRow, created_at: datetime) -> None:
    """What the giver's province owes the receiver's for a credited transfer, netted by clearing. Written as the
    transaction commits (nothing reads it back before; its unique ref still refuses a second one then)."""
    uow.defer(_NEW_OBLIGATION, {
        "kind": "TRANSFER", "ref": transfer.transfer_id, "debtor_admdvs": transfer.giver_admdvs,
        "creditor_admdvs": transfer.receiver_admdvs, "amount_fen": transfer.amount_fen, "created_at": created_at})


async def by_id(view: ReadView, transfer_id: str) -> HubTransferRow | None:
    row = (await view.execute(sa.select(*_COLUMNS).where(TRANSFERS.c.transfer_id == transfer_id))).first()
    return None if row is None else _transfer(row)


async def hops(view: ReadView, transfer_id: str) -> list[Hop]:
    rows = await view.execute(sa.select(HOPS.c.hop, HOPS.c.service, HOPS.c.at).where(
        HOPS.c.transfer_id == transfer_id).order_by(HOPS.c.at, HOPS.c.id))
    return [Hop(row.hop, row.service, row.at) for row in rows]
