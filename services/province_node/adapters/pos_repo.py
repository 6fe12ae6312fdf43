"""The node's POS tables (adapters/pos_tables.py) behind typed rows: `pos_payments` (one row per settlement)
and `pos_operations` (every state-changing POS message by msgid, with the answer given).

Every statement of a settle is built once (`Prepared`): their compiled forms are reused on the hot path. Rows
come back as `PaymentRow` / `OperationRow`, whose fields are the tables' columns in order (checked by
tests/unit/test_pos_settlement.py), so a row is typed without a second read or a copy by name. The state of a
settlement changes only under the lock its locked read took, and the UPDATE says which state it expects: a
change nobody else can make, asserted (rowcount 1) rather than assumed."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa

from services.province_node.adapters.mutual_aid_tables import QuotaMirror
from services.province_node.adapters.pos_tables import PosOperation, PosPaymentRow
from services.province_node.adapters.tables import Account, Person
from services.province_node.domain.pos_settlement import Effect, OperationKind, SettlementState
from shared.contracts.internal_api import PosPayment
from shared.db import Prepared, ReadView, UnitOfWork, for_update
from shared.tables import table

PAYMENTS = table(PosPaymentRow)
OPERATIONS = table(PosOperation)


class PaymentRow(NamedTuple):
    """A row of `pos_payments`. `quota_parts` is JSON [[binding_id, amount_fen], ...]."""

    setl_id: str
    msgid: str
    mdtrt_id: str
    psn_no: str
    fixmedins_code: str
    insutype: str
    state: str
    version: int
    medfee_fen: int
    eligible_fen: int
    acct_pay_fen: int
    wallet_pay_fen: int
    quota_pay_fen: int
    quota_parts: str
    cash_pay_fen: int
    settled_at: datetime
    updated_at: datetime

    @property
    def settlement_state(self) -> SettlementState:
        return SettlementState(self.state)

    def quota_spends(self) -> list[tuple[str, int]]:
        """The quota parts it was paid from: (binding_id, amount_fen)."""
        return [(str(binding_id), int(amount_fen)) for binding_id, amount_fen in orjson.loads(self.quota_parts)]


class OperationRow(NamedTuple):
    """A row of `pos_operations`: what message `msgid` was (`kind`), what it moved (`effect`), its answer, and
    the 2601 that reversed it, if any."""

    msgid: str
    kind: str
    setl_id: str | None
    effect: str
    request_hash: str
    response: bytes
    reversed_by: str | None
    created_at: datetime

    @property
    def operation_kind(self) -> OperationKind:
        return OperationKind(self.kind)


def payment_from_row(row: PaymentRow) -> PosPayment:
    """The wire's view of a settlement (shared/contracts): named field by field, so that renaming a column or
    a contract field is a type error here rather than a silent mismatch."""
    return PosPayment(setl_id=row.setl_id, mdtrt_id=row.mdtrt_id, msgid=row.msgid, psn_no=row.psn_no,
                      fixmedins_code=row.fixmedins_code, insutype=row.insutype,
                      state=SettlementState(row.state).value, version=row.version, medfee_fen=row.medfee_fen,
                      eligible_fen=row.eligible_fen, acct_pay_fen=row.acct_pay_fen,
                      wallet_pay_fen=row.wallet_pay_fen, quota_pay_fen=row.quota_pay_fen,
                      cash_pay_fen=row.cash_pay_fen, settled_at=row.settled_at)


# Built once: every settle runs these, and their compiled forms are reused.
_OPERATION = Prepared(sa.select(OPERATIONS).where(OPERATIONS.c.msgid == sa.bindparam("b_msgid")))
_NEW_OPERATION = Prepared(sa.insert(OPERATIONS))
_NEW_PAYMENT = Prepared(sa.insert(PAYMENTS))
# Locked reads of what a cancel or reversal is about to change: two of them for one settlement (on two replicas,
# or a 2103 beside a 2601) then run one after the other, and the second sees what the first did.
_PAYMENT_LOCKED = Prepared(for_update(sa.select(PAYMENTS).where(PAYMENTS.c.setl_id == sa.bindparam("b_setl_id"))))
_OPERATION_LOCKED = Prepared(for_update(sa.select(OPERATIONS).where(OPERATIONS.c.msgid == sa.bindparam("b_msgid"))))
_STATE_CHANGE = Prepared(sa.update(PAYMENTS).where(PAYMENTS.c.setl_id == sa.bindparam("b_setl_id"),
                                                   PAYMENTS.c.state == sa.bindparam("b_state")))
_REVERSED_BY = Prepared(sa.update(OPERATIONS).where(OPERATIONS.c.msgid == sa.bindparam("b_msgid")))


def _operation(row: Any) -> OperationRow | None:
    return None if row is None else OperationRow._make(row)


async def operation(view: UnitOfWork | ReadView, msgid: str) -> OperationRow | None:
    return _operation((await view.execute(_OPERATION, {"b_msgid": msgid})).first())


async def operation_locked(uow: UnitOfWork, msgid: str) -> OperationRow | None:
    return _operation((await uow.execute(_OPERATION_LOCKED, {"b_msgid": msgid})).first())


async def add_operation(uow: UnitOfWork, operation_row: OperationRow) -> None:
    """Written as the transaction commits, with its other deferred rows (UnitOfWork.defer): nothing reads a
    message's record back in the transaction that makes it. Two transactions recording one msgid still meet
    on its unique key, then at commit: the loser rolls back whole and runs again (run_retrying)."""
    uow.defer(_NEW_OPERATION, operation_row._asdict())


async def preempt(uow: UnitOfWork, msgid: str, reversed_by: str, now: datetime) -> None:
    """A reversal of a message not seen yet: its msgid is taken, so that it is refused should it arrive."""
    await add_operation(uow, OperationRow(msgid=msgid, kind=OperationKind.PREEMPTED.value, setl_id=None,
                                          effect=Effect.NONE.value, request_hash="", response=b"",
                                          reversed_by=reversed_by, created_at=now))


async def mark_reversed(uow: UnitOfWork, msgid: str, reversed_by: str) -> None:
    await uow.execute(_REVERSED_BY, {"b_msgid": msgid, "reversed_by": reversed_by})


async def add_payment(uow: UnitOfWork, payment: PaymentRow) -> None:
    """Written as the transaction commits, with its other deferred rows (nothing reads a new settlement back in
    the transaction that makes it, and no row refers to it by key)."""
    uow.defer(_NEW_PAYMENT, payment._asdict())


async def payment_locked(uow: UnitOfWork, setl_id: str) -> PaymentRow | None:
    row = (await uow.execute(_PAYMENT_LOCKED, {"b_setl_id": setl_id})).first()
    return None if row is None else PaymentRow._make(row)


async def change_state(uow: UnitOfWork, payment: PaymentRow, state: SettlementState, now: datetime) -> PaymentRow:
    """Write the settlement's new state (one version more) over the one read under lock, and return the row as
    it is now."""
    changed = payment._replace(state=state.value, version=payment.version + 1, updated_at=now)
    result = await uow.execute(_STATE_CHANGE, {"b_setl_id": payment.setl_id, "b_state": payment.state,
                                               "state": changed.state, "version": changed.version,
                                               "updated_at": now})
    assert result.rowcount == 1, f"settlement {payment.setl_id} changed under a lock"
    return changed


# ------------------------------------------------------------------------------------------ what a settle reads

_ACCOUNTS, _PERSONS, _MIRRORS = table(Account), table(Person), table(QuotaMirror)


class SettleFacts(NamedTuple):
    """What a settle is decided on, read in one statement (issue 9: four round trips before): whether its msgid
    is known here, the payer's insurance, the payer's personal account and wallet balances (None: no such
    account), their rows locked until the unit of work ends, and the quotas the payer may spend this year,
    oldest binding first: (binding_id, what is left to spend)."""

    operation_known: bool
    insured: bool | None  # None: no such person here
    insutype: str | None
    personal_account_fen: int | None
    wallet_fen: int | None
    quotas: tuple[tuple[str, int], ...]


def _settle_facts() -> Any:
    # The two accounts locked in id order, as every other locking read here locks them (no deadlock between
    # a settle and a transfer of one person); a CTE is run once, however often it is read.
    locked = for_update(sa.select(_ACCOUNTS.c.account_id, _ACCOUNTS.c.balance_fen).where(
        _ACCOUNTS.c.account_id.in_([sa.bindparam("first_account"), sa.bindparam("second_account")]))
        .order_by(_ACCOUNTS.c.account_id)).cte("locked")

    def balance_of(account: str) -> Any:
        return sa.select(locked.c.balance_fen).where(locked.c.account_id == sa.bindparam(account)).scalar_subquery()

    def person(column: str) -> Any:
        return sa.select(_PERSONS.c[column]).where(_PERSONS.c.psn_no == sa.bindparam("psn_no")).scalar_subquery()

    facts = sa.select(
        sa.exists().where(OPERATIONS.c.msgid == sa.bindparam("msgid")).label("operation_known"),
        person("insured").label("insured"), person("insutype").label("insutype"),
        balance_of("personal_account").label("personal_account_fen"), balance_of("wallet").label("wallet_fen"),
    ).subquery("facts")
    quotas = sa.select(_MIRRORS.c.binding_id, (_MIRRORS.c.annual_quota_fen - _MIRRORS.c.used_fen).label("left_fen"),
                       _MIRRORS.c.updated_at).where(
        _MIRRORS.c.receiver_psn_no == sa.bindparam("psn_no"), _MIRRORS.c.year == sa.bindparam("year"),
        _MIRRORS.c.closed.is_(False), _MIRRORS.c.annual_quota_fen > _MIRRORS.c.used_fen).subquery("quotas")
    # One row per spendable quota (the facts repeated), or one with no quota.
    return sa.select(facts, quotas.c.binding_id, quotas.c.left_fen).select_from(
        facts.outerjoin(quotas, sa.true())).order_by(quotas.c.updated_at, quotas.c.binding_id)


_SETTLE_FACTS = Prepared(_settle_facts())


async def settle_facts(uow: UnitOfWork, *, msgid: str, psn_no: str, personal_account: str, wallet: str,
                       year: int) -> SettleFacts:
    first, second = sorted((personal_account, wallet))
    rows = (await uow.execute(_SETTLE_FACTS, {
        "msgid": msgid, "psn_no": psn_no, "personal_account": personal_account, "wallet": wallet,
        "first_account": first, "second_account": second, "year": year})).all()
    row = rows[0]
    return SettleFacts(
        operation_known=bool(row.operation_known), insured=None if row.insured is None else bool(row.insured),
        insutype=row.insutype,
        personal_account_fen=None if row.personal_account_fen is None else int(row.personal_account_fen),
        wallet_fen=None if row.wallet_fen is None else int(row.wallet_fen),
        quotas=tuple((str(quota.binding_id), int(quota.left_fen)) for quota in rows if quota.binding_id is not None))
