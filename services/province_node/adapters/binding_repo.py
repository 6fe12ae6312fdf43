"""The node's replica of the hub's binding registry (`bindings`), with typed rows. Snapshots replace a row only
when newer (domain/binding_replica.py decides); the transfer and quota paths read it locally."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from services.province_node.adapters.confirmation_tables import BindingConfirmation
from services.province_node.adapters.tables import BindingReplica
from services.province_node.domain.binding_replica import BindingState
from shared.db import Prepared, ReadView, UnitOfWork
from shared.tables import table

BINDINGS = table(BindingReplica)
CONFIRMATIONS = table(BindingConfirmation)


class BindingRow(NamedTuple):
    binding_id: str
    giver_psn_no: str
    giver_admdvs: str
    relative_psn_no: str
    relative_admdvs: str
    relative_name_masked: str
    relation: str
    state: BindingState
    version: int
    created_at: datetime
    ended_reason: str | None


class ListedBinding(NamedTuple):
    """A binding as listed to one of its parties, with how it was confirmed when that happened here."""

    binding: BindingRow
    confirmed_via: str | None  # face | sms | counter
    clerk_id: str | None


COLUMNS = [BINDINGS.c[name] for name in BindingRow._fields]
_STATE = BindingRow._fields.index("state")


def binding_of(row: Any) -> BindingRow:
    """The first len(COLUMNS) values of `row`, typed."""
    values = list(row[:len(COLUMNS)])
    values[_STATE] = BindingState(values[_STATE])
    return BindingRow._make(values)


# Run straight on the driver inside a unit of work (shared/db/statements.py Prepared): every transfer reads its binding.
_BY_ID = Prepared(sa.select(*COLUMNS).where(BINDINGS.c.binding_id == sa.bindparam("binding_id")))
_STATE_OF = Prepared(sa.select(BINDINGS.c.state).where(BINDINGS.c.binding_id == sa.bindparam("binding_id")))
_VERSION_OF = Prepared(sa.select(BINDINGS.c.version).where(BINDINGS.c.binding_id == sa.bindparam("binding_id")))


async def binding(view: UnitOfWork | ReadView, binding_id: str) -> BindingRow | None:
    row = (await view.execute(_BY_ID, {"binding_id": binding_id})).first()
    return None if row is None else binding_of(row)


async def state_of(view: UnitOfWork | ReadView, binding_id: str) -> BindingState | None:
    row = (await view.execute(_STATE_OF, {"binding_id": binding_id})).first()
    return None if row is None else BindingState(row.state)


async def version_of(uow: UnitOfWork, binding_id: str) -> int | None:
    row = (await uow.execute(_VERSION_OF, {"binding_id": binding_id})).first()
    return None if row is None else int(row.version)


async def add(uow: UnitOfWork, values: dict[str, Any]) -> None:
    """A snapshot's fields (BindingSnapshot), for a binding the replica does not have yet."""
    await uow.execute(sa.insert(BINDINGS).values(**values))


async def replace(uow: UnitOfWork, binding_id: str, values: dict[str, Any]) -> None:
    await uow.execute(sa.update(BINDINGS).where(BINDINGS.c.binding_id == binding_id).values(**values))


async def of_person(view: ReadView, psn_no: str) -> list[ListedBinding]:
    """Every binding where the person is giver or relative, oldest first."""
    rows = await view.execute(sa.select(*COLUMNS, CONFIRMATIONS.c.method, CONFIRMATIONS.c.clerk_id).outerjoin(
        CONFIRMATIONS, CONFIRMATIONS.c.binding_id == BINDINGS.c.binding_id).where(
        sa.or_(BINDINGS.c.giver_psn_no == psn_no, BINDINGS.c.relative_psn_no == psn_no)
    ).order_by(BINDINGS.c.created_at))
    return [ListedBinding(binding_of(row), row.method, row.clerk_id) for row in rows]
