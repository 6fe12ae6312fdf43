"""The node's medical settlements and its medical message log (adapters/medical_tables.py) behind typed rows:
`medical_settlements` (one row per settlement: an outpatient batch or a whole stay) and `medical_operations`
(every state-changing medical message by msgid, with its answer, or PREEMPTED).

Rows come back as `SettlementRow` / `OperationRow`, whose fields are the tables' columns in order (checked by
tests/unit/test_medical_settlement.py). A settlement's state changes only under the lock its locked read took
(and its person's, which every medical message takes first), and the UPDATE names the state it read: rowcount 1,
asserted."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from services.province_node.adapters.medical_tables import MedicalOperation, MedicalSettlementRow
from services.province_node.domain.medical_policy import Setting
from services.province_node.domain.medical_settlement import SettlementState
from shared.db import UnitOfWork, for_update
from shared.tables import table

SETTLEMENTS = table(MedicalSettlementRow)
OPERATIONS = table(MedicalOperation)

PREEMPTED = "PREEMPTED"  # the `infno` of a msgid reversed before it arrived


class SettlementRow(NamedTuple):
    """A row of `medical_settlements`. `quota_parts` is JSON [[binding_id, amount_fen], ...]; `year` is the
    accumulators' year it counts in."""

    setl_id: str
    msgid: str
    mdtrt_id: str
    chrg_bchno: str
    psn_no: str
    fixmedins_code: str
    insutype: str
    setting: Setting
    state: str
    version: int
    year: int
    medfee_fen: int
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    act_pay_dedc_fen: int
    hifp_pay_fen: int
    ratio: str
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_pay_fen: int
    quota_parts: str
    cash_pay_fen: int
    settled_at: datetime
    updated_at: datetime


class OperationRow(NamedTuple):
    """A row of `medical_operations`: what message `msgid` was (its infno, or PREEMPTED), what it moved, its
    answer, and the 2601 that reversed it, if any."""

    msgid: str
    infno: str
    mdtrt_id: str | None
    setl_id: str | None
    effect: str
    request_hash: str
    response: bytes
    reversed_by: str | None
    created_at: datetime


def _settlement(row: Any) -> SettlementRow:
    return SettlementRow._make(row)


def _operation(row: Any) -> OperationRow | None:
    return None if row is None else OperationRow._make(row)


# ------------------------------------------------------------------------------------------------ settlements


async def settlement(uow: UnitOfWork, setl_id: str) -> SettlementRow:
    return _settlement((await uow.execute(sa.select(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == setl_id))).one())


async def settlement_locked(uow: UnitOfWork, setl_id: str) -> SettlementRow | None:
    row = (await uow.execute(for_update(sa.select(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == setl_id)))).first()
    return None if row is None else _settlement(row)


async def in_effect_of_visit(uow: UnitOfWork, mdtrt_id: str) -> list[SettlementRow]:
    """The visit's settlements in effect (SETTLED)."""
    return [_settlement(row) for row in await uow.execute(sa.select(SETTLEMENTS).where(
        SETTLEMENTS.c.mdtrt_id == mdtrt_id, SETTLEMENTS.c.state == SettlementState.SETTLED.value))]


async def add_settlement(uow: UnitOfWork, values: dict[str, Any]) -> SettlementRow:
    """A new settlement, as the database holds it (its times as read back)."""
    await uow.execute(sa.insert(SETTLEMENTS).values(**values))
    return await settlement(uow, values["setl_id"])


async def change_state(uow: UnitOfWork, row: SettlementRow, state: SettlementState, now: datetime) -> SettlementRow:
    """The settlement's new state (one version more) over the one read under lock, and the row as it is now."""
    changed = await uow.execute(sa.update(SETTLEMENTS).where(SETTLEMENTS.c.setl_id == row.setl_id,
                                                             SETTLEMENTS.c.state == row.state).values(
        state=state.value, version=row.version + 1, updated_at=now))
    assert changed.rowcount == 1, f"settlement {row.setl_id} changed under a lock"
    return await settlement(uow, row.setl_id)


# ------------------------------------------------------------------------------------------------ the message log


async def operation(uow: UnitOfWork, msgid: str) -> OperationRow | None:
    return _operation((await uow.execute(sa.select(OPERATIONS).where(OPERATIONS.c.msgid == msgid))).first())


async def operation_locked(uow: UnitOfWork, msgid: str) -> OperationRow | None:
    return _operation((await uow.execute(for_update(sa.select(OPERATIONS).where(OPERATIONS.c.msgid == msgid))))
                      .first())


async def add_operation(uow: UnitOfWork, operation_row: OperationRow) -> None:
    await uow.execute(sa.insert(OPERATIONS).values(**operation_row._asdict()))


async def preempt(uow: UnitOfWork, msgid: str, reversed_by: str, now: datetime) -> None:
    """A reversal of a message not seen yet: its msgid is taken, so that it is refused should it arrive."""
    await add_operation(uow, OperationRow(msgid=msgid, infno=PREEMPTED, mdtrt_id=None, setl_id=None, effect="NONE",
                                          request_hash="", response=b"", reversed_by=reversed_by, created_at=now))


async def mark_reversed(uow: UnitOfWork, msgid: str, reversed_by: str) -> None:
    await uow.execute(sa.update(OPERATIONS).where(OPERATIONS.c.msgid == msgid).values(reversed_by=reversed_by))
