"""The hub's binding registry (`bindings_registry`), with typed rows. A binding that is about to change is read
`FOR UPDATE` (a confirm and an end, perhaps on two replicas, take turns, so each version number is given once);
one open binding per pair is kept by a named lock around the check and the insert (service_layer/bindings.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from services.national_hub.adapters.tables import Binding
from services.national_hub.domain.binding_lifecycle import BindingState, Change
from shared.db import Prepared, ReadView, UnitOfWork, for_update
from shared.tables import table

BINDINGS = table(Binding)


class BindingRow(NamedTuple):
    binding_id: str
    request_key: str
    giver_psn_no: str
    giver_admdvs: str
    relative_psn_no: str
    relative_admdvs: str
    relative_name_masked: str
    relation: str
    state: BindingState
    version: int
    created_at: datetime
    updated_at: datetime
    ended_reason: str | None


COLUMNS = [BINDINGS.c[name] for name in BindingRow._fields]
_STATE = BindingRow._fields.index("state")


def binding_of(row: Any) -> BindingRow:
    """The first len(COLUMNS) values of `row`, typed."""
    values = list(row[:len(COLUMNS)])
    values[_STATE] = BindingState(values[_STATE])
    return BindingRow._make(values)


# Prepared: hot reads (through SQLAlchemy's execution a binding's read was a twentieth of the hub's CPU per
# transfer, issue 9; a transfer's arrival now reads it with its other facts, transfer_repo.arrival_facts).
_SELECT_BY_ID = sa.select(*COLUMNS).where(BINDINGS.c.binding_id == sa.bindparam("binding_id"))
_BY_ID = Prepared(_SELECT_BY_ID)
_LOCKED_BY_ID = Prepared(for_update(_SELECT_BY_ID))


async def by_id(view: UnitOfWork | ReadView, binding_id: str) -> BindingRow | None:
    """Not locked (a binding's end reaches its transfers through the registry)."""
    row = (await view.execute(_BY_ID, {"binding_id": binding_id})).first()
    return None if row is None else binding_of(row)


async def locked(uow: UnitOfWork, binding_id: str) -> BindingRow | None:
    row = (await uow.execute(_LOCKED_BY_ID, {"binding_id": binding_id})).first()
    return None if row is None else binding_of(row)


async def by_request_key(uow: UnitOfWork, request_key: str) -> BindingRow | None:
    row = (await uow.execute(sa.select(*COLUMNS).where(BINDINGS.c.request_key == request_key))).first()
    return None if row is None else binding_of(row)


async def open_between(uow: UnitOfWork, giver_psn_no: str, relative_psn_no: str) -> str | None:
    """The id of the pair's binding not yet ended, if any."""
    row = (await uow.execute(sa.select(BINDINGS.c.binding_id).where(
        BINDINGS.c.giver_psn_no == giver_psn_no, BINDINGS.c.relative_psn_no == relative_psn_no,
        BINDINGS.c.state != BindingState.ENDED))).first()
    return None if row is None else str(row.binding_id)


async def open_of_person_for_update(uow: UnitOfWork, psn_no: str) -> list[BindingRow]:
    """Every binding not yet ended where the person is giver or relative, locked, oldest first."""
    rows = (await uow.execute(for_update(sa.select(*COLUMNS).where(
        sa.or_(BINDINGS.c.giver_psn_no == psn_no, BINDINGS.c.relative_psn_no == psn_no),
        BINDINGS.c.state != BindingState.ENDED).order_by(BINDINGS.c.created_at)))).all()
    return [binding_of(row) for row in rows]


async def active_givers_of(uow: UnitOfWork, relative_psn_no: str) -> int:
    """How many givers have an ACTIVE binding with this relative (the fake-kinship rule's count)."""
    return int((await uow.execute(sa.select(sa.func.count(sa.distinct(BINDINGS.c.giver_psn_no))).where(
        BINDINGS.c.relative_psn_no == relative_psn_no, BINDINGS.c.state == BindingState.ACTIVE))).scalar_one())


async def add(uow: UnitOfWork, binding: BindingRow) -> None:
    await uow.execute(sa.insert(BINDINGS).values(**binding._asdict()))


async def apply(uow: UnitOfWork, binding_id: str, change: Change, at: datetime) -> None:
    """A change decided on the row read with `locked`."""
    await uow.execute(sa.update(BINDINGS).where(BINDINGS.c.binding_id == binding_id).values(
        state=change.state, version=change.version, updated_at=at, ended_reason=change.ended_reason))
