"""Quotas (共济额度). The giver's node reserves part of the personal account for the year (QUOTA account);
the relative's node holds a mirror it spends locally at the pharmacy or on premiums, so no call to the
giver's province is made while a patient waits. Spends flow back as events (the giver's node moves the
reserve to clearing); lowering or ending a quota shrinks the mirror first, then the giver's node releases
what can no longer be spent (domain/quota_rules.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.mutual_aid_tables import QuotaGrant, QuotaMirror
from services.province_node.domain import ledger, notices, quota_rules
from services.province_node.domain.errors import DomainError, Forbidden
from services.province_node.service_layer.bindings import binding_for_giver, notify
from services.province_node.service_layer.context import NodeContext
from shared.contracts import topics
from shared.contracts.events import BindingSnapshot
from shared.contracts.mutual_aid_events import QuotaMirrorState, QuotaSet, QuotaSpent
from shared.db import Prepared, ReadView, UnitOfWork, for_update
from shared.outbox import emit
from shared.tables import table
from shared.tokens import Claims

QuotaUse = Literal["pharmacy", "outpatient", "inpatient", "premium"]
GRANTS = table(QuotaGrant)
MIRRORS = table(QuotaMirror)
_GRANT_LOCKED = for_update(sa.select(GRANTS).where(GRANTS.c.binding_id == sa.bindparam("b_binding_id"),
                                                   GRANTS.c.year == sa.bindparam("b_year")))


@dataclass(frozen=True)
class SpendableQuota:
    binding_id: str
    available_fen: int


# ---------------------------------------------------------------------------------------------- giver's side


async def set_quota(ctx: NodeContext, uow: UnitOfWork, claims: Claims, binding_id: str,
                    amount: Any) -> tuple[int, Any]:
    annual_quota_fen = quota_rules.parse_quota_fen(amount)
    now = ctx.clock.now()
    if not claims.has_face_step_up(now.timestamp()):
        raise Forbidden("STEP_UP_REQUIRED", "setting a quota needs a face verification in the last 5 minutes")
    binding = await binding_for_giver(uow, binding_id, claims.psn_no)
    if binding.state != "ACTIVE":
        raise DomainError("BINDING_NOT_ACTIVE", f"the binding is {binding.state}")
    year = quota_rules.quota_year(now)
    # Locked: two changes of one quota (two replicas), or a change beside the binding's end, take turns, so
    # the reserve is topped up once and each version is given once. A first grant's insert race ends in a
    # unique-key conflict, and the request runs again (shared/db.py run_retrying).
    grant = (await uow.execute(_GRANT_LOCKED, {"b_binding_id": binding_id, "b_year": year})).first()
    reserve = ledger.quota_reserve_account(binding_id, year)
    if grant is None:
        await ledger_repo.open_account(uow, reserve, "QUOTA", claims.psn_no, now)
        await uow.execute(sa.insert(GRANTS).values(
            binding_id=binding_id, year=year, giver_psn_no=claims.psn_no, relative_psn_no=binding.relative_psn_no,
            relative_admdvs=binding.relative_admdvs, annual_quota_fen=0, version=0, state="OPEN", updated_at=now))
        grant = (await uow.execute(_GRANT_LOCKED, {"b_binding_id": binding_id, "b_year": year})).one()
    reserved_fen = await ledger_repo.balance(uow, reserve) or 0
    needed_fen = quota_rules.reserve_needed_fen(annual_quota_fen, grant.mirror_quota_fen, grant.mirror_used_fen)
    if needed_fen > reserved_fen:
        # A raise is reserved now (the guarded posting refuses it if the personal account is short).
        await ledger_repo.post(uow, ledger.move("QUOTA_RESERVE", binding_id, ledger.personal_account(claims.psn_no),
                                                reserve, needed_fen - reserved_fen), now)
    version = grant.version + 1
    await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == binding_id, GRANTS.c.year == year).values(
        annual_quota_fen=annual_quota_fen, version=version, updated_at=now))
    await emit(uow, topics.HUB_INBOUND, binding_id, QuotaSet(
        binding_id=binding_id, giver_psn_no=claims.psn_no, giver_admdvs=ctx.admdvs,
        relative_psn_no=binding.relative_psn_no, relative_admdvs=binding.relative_admdvs, year=year,
        annual_quota_fen=annual_quota_fen, version=version), source=ctx.source, trace_id=binding_id)
    return 200, {"binding_id": binding_id, "year": year, "annual_quota_fen": annual_quota_fen,
                 "reserved_fen": await ledger_repo.balance(uow, reserve), "used_fen": grant.mirror_used_fen}


async def on_quota_spent_at_giver(ctx: NodeContext, uow: UnitOfWork, msg: QuotaSpent) -> None:
    """The relative spent (or got back) quota money: it leaves the reserve for clearing (or comes back)."""
    reserve = ledger.quota_reserve_account(msg.binding_id, msg.year)
    if msg.amount_fen > 0:
        posting = ledger.move("QUOTA_SPENT", msg.spend_id, reserve, ledger.CLEARING, msg.amount_fen)
    else:
        posting = ledger.move("QUOTA_RETURNED", msg.spend_id, ledger.CLEARING, reserve, -msg.amount_fen)
    await ledger_repo.post(uow, posting, ctx.clock.now())


async def on_mirror_state(ctx: NodeContext, uow: UnitOfWork, msg: QuotaMirrorState) -> None:
    grant = (await uow.execute(_GRANT_LOCKED, {"b_binding_id": msg.binding_id, "b_year": msg.year})).first()
    if grant is None:
        return
    now = ctx.clock.now()
    reserve = ledger.quota_reserve_account(msg.binding_id, msg.year)
    reserved_fen = await ledger_repo.balance(uow, reserve) or 0
    requested_fen = 0 if grant.state != "OPEN" else grant.annual_quota_fen
    give_back_fen = quota_rules.release_fen(reserved_fen, requested_fen, msg.annual_quota_fen, msg.used_fen)
    if give_back_fen:
        await ledger_repo.post(uow, ledger.move("QUOTA_RELEASE", msg.binding_id, reserve,
                                                ledger.personal_account(grant.giver_psn_no), give_back_fen), now)
    state = "CLOSED" if msg.closed and grant.state != "OPEN" else grant.state
    await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == msg.binding_id, GRANTS.c.year == msg.year)
                      .values(mirror_quota_fen=msg.annual_quota_fen, mirror_used_fen=msg.used_fen, state=state,
                              updated_at=now))


async def close_grants(ctx: NodeContext, uow: UnitOfWork, binding_id: str | None, before_year: int | None) -> int:
    """End quotas (binding ended, or a past year): nothing more may be asked for; the mirror's closing
    state then releases the rest. Returns how many were closed."""
    query = for_update(sa.select(GRANTS).where(GRANTS.c.state == "OPEN"))
    if binding_id is not None:
        query = query.where(GRANTS.c.binding_id == binding_id)
    if before_year is not None:
        query = query.where(GRANTS.c.year < before_year)
    rows = (await uow.execute(query)).all()
    now = ctx.clock.now()
    for grant in rows:
        version = grant.version + 1
        await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == grant.binding_id,
                                                  GRANTS.c.year == grant.year).values(
            state="CLOSING", annual_quota_fen=0, version=version, updated_at=now))
        await emit(uow, topics.HUB_INBOUND, grant.binding_id, QuotaSet(
            binding_id=grant.binding_id, giver_psn_no=grant.giver_psn_no, giver_admdvs=ctx.admdvs,
            relative_psn_no=grant.relative_psn_no, relative_admdvs=grant.relative_admdvs, year=grant.year,
            annual_quota_fen=0, version=version, closing=True), source=ctx.source, trace_id=grant.binding_id)
    return len(rows)


# ------------------------------------------------------------------------------------------- relative's side


_MIRROR = sa.select(MIRRORS).where(MIRRORS.c.binding_id == sa.bindparam("b_binding_id"),
                                   MIRRORS.c.year == sa.bindparam("b_year"))
# Locked: two tills spending one quota (two replicas), or a spend beside a QuotaSet, change the mirror one after
# the other, so `used_fen` never loses an update and never passes the quota.
_MIRROR_LOCKED = Prepared(for_update(_MIRROR))


async def _mirror(uow: UnitOfWork | ReadView, binding_id: str, year: int) -> Any:
    return (await uow.execute(_MIRROR, {"b_binding_id": binding_id, "b_year": year})).first()


async def _locked_mirror(uow: UnitOfWork, binding_id: str, year: int) -> Any:
    return (await uow.execute(_MIRROR_LOCKED, {"b_binding_id": binding_id, "b_year": year})).first()


async def _report(ctx: NodeContext, uow: UnitOfWork, binding_id: str, year: int) -> None:
    mirror = await _mirror(uow, binding_id, year)
    await emit(uow, topics.HUB_INBOUND, binding_id, QuotaMirrorState(
        binding_id=binding_id, giver_admdvs=mirror.giver_admdvs, relative_admdvs=ctx.admdvs, year=year,
        version=mirror.version, annual_quota_fen=mirror.annual_quota_fen, used_fen=mirror.used_fen,
        closed=mirror.closed), source=ctx.source, trace_id=binding_id)


async def on_quota_set(ctx: NodeContext, uow: UnitOfWork, msg: QuotaSet) -> None:
    mirror = await _locked_mirror(uow, msg.binding_id, msg.year)
    now = ctx.clock.now()
    if mirror is None:
        limit = quota_rules.apply_to_mirror(msg.annual_quota_fen, msg.closing, 0)
        await uow.execute(sa.insert(MIRRORS).values(
            binding_id=msg.binding_id, year=msg.year, receiver_psn_no=msg.relative_psn_no,
            giver_psn_no=msg.giver_psn_no, giver_admdvs=msg.giver_admdvs, annual_quota_fen=limit.annual_quota_fen,
            used_fen=0, version=msg.version, closed=limit.closed, updated_at=now))
    elif msg.version > mirror.version:
        limit = quota_rules.apply_to_mirror(msg.annual_quota_fen, msg.closing or mirror.closed, mirror.used_fen)
        await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == msg.binding_id,
                                                   MIRRORS.c.year == msg.year).values(
            annual_quota_fen=limit.annual_quota_fen, closed=limit.closed, version=msg.version, updated_at=now))
    else:
        return  # an older instruction than the one applied
    if not msg.closing and msg.annual_quota_fen:
        await notify(uow, ctx, msg.relative_psn_no, notices.quota_granted(msg.annual_quota_fen, msg.year))
    await _report(ctx, uow, msg.binding_id, msg.year)


async def close_mirrors_of_binding(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    """The binding ended: nothing more is spent from its quotas here, and the giver's node learns what was."""
    rows = (await uow.execute(for_update(sa.select(MIRRORS).where(MIRRORS.c.binding_id == snapshot.binding_id,
                                                                  MIRRORS.c.closed.is_(False))))).all()
    for mirror in rows:
        await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == mirror.binding_id,
                                                   MIRRORS.c.year == mirror.year).values(
            annual_quota_fen=mirror.used_fen, closed=True, updated_at=ctx.clock.now()))
        await _report(ctx, uow, mirror.binding_id, mirror.year)


# Built once: every pharmacy payment and preview reads it.
_OPEN_MIRRORS_OF = Prepared(sa.select(MIRRORS).where(
    MIRRORS.c.receiver_psn_no == sa.bindparam("b_receiver"), MIRRORS.c.year == sa.bindparam("b_year"),
    MIRRORS.c.closed.is_(False)).order_by(MIRRORS.c.updated_at, MIRRORS.c.binding_id))


async def spendable_quotas(view: UnitOfWork | ReadView, receiver_psn_no: str, year: int) -> list[SpendableQuota]:
    """Quotas received by this person for `year`, oldest binding first, with what is left to spend."""
    rows = await view.execute(_OPEN_MIRRORS_OF, {"b_receiver": receiver_psn_no, "b_year": year})
    return [SpendableQuota(row.binding_id, row.annual_quota_fen - row.used_fen) for row in rows
            if row.annual_quota_fen > row.used_fen]


async def _change_use(ctx: NodeContext, uow: UnitOfWork, binding_id: str, delta_fen: int, use: QuotaUse) -> None:
    """Spend (delta > 0) or give back (delta < 0) on the mirror, post the relative's side of it, and tell
    the giver's node. The counterpart of the pharmacy or premium leg is CLEARING / PREMIUM_INCOME."""
    now = ctx.clock.now()
    year = quota_rules.quota_year(now)
    mirror = await _locked_mirror(uow, binding_id, year)
    if mirror is None:
        raise DomainError("QUOTA_NOT_FOUND", "no quota of this binding for this year")
    if delta_fen > 0:
        quota_rules.check_spend(limit_fen=mirror.annual_quota_fen, used_fen=mirror.used_fen, closed=mirror.closed,
                                amount_fen=delta_fen)
    used_fen = max(0, mirror.used_fen + delta_fen)
    values: dict[str, Any] = {"used_fen": used_fen, "updated_at": now}
    if mirror.closed:
        values["annual_quota_fen"] = used_fen  # a closed quota stays at what was spent: the rest goes back
    await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == binding_id, MIRRORS.c.year == year)
                      .values(**values))
    counterpart = ledger.PREMIUM_INCOME if use == "premium" else ledger.CLEARING
    spend_id = "Q" + uuid.uuid4().hex
    if delta_fen > 0:
        posting = ledger.move("QUOTA_SPEND", spend_id, ledger.QUOTA_DUE, counterpart, delta_fen)
    else:
        posting = ledger.move("QUOTA_SPEND_RETURN", spend_id, counterpart, ledger.QUOTA_DUE, -delta_fen)
    await ledger_repo.post(uow, posting, now)
    await emit(uow, topics.HUB_INBOUND, binding_id, QuotaSpent(
        spend_id=spend_id, binding_id=binding_id, year=year, giver_admdvs=mirror.giver_admdvs,
        relative_admdvs=ctx.admdvs, amount_fen=delta_fen, use=use,
        occurred_at=now), source=ctx.source, trace_id=binding_id)
    await _report(ctx, uow, binding_id, year)


async def spend_quota(ctx: NodeContext, uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str,
                      use: QuotaUse = "pharmacy") -> None:
    """Spend from a received quota's mirror (inside the caller's transaction); `ref` names the payment."""
    await _change_use(ctx, uow, binding_id, amount_fen, use)


async def return_quota_spend(ctx: NodeContext, uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str,
                             use: QuotaUse = "pharmacy") -> None:
    """Undo a spend (POS or medical cancel or reversal)."""
    await _change_use(ctx, uow, binding_id, -amount_fen, use)


# ------------------------------------------------------------------------------------------------ /v1/me


async def quotas_of(view: ReadView, psn_no: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    granted = await view.execute(sa.select(GRANTS).where(GRANTS.c.giver_psn_no == psn_no, GRANTS.c.state == "OPEN")
                                 .order_by(GRANTS.c.year, GRANTS.c.binding_id))
    received = await view.execute(sa.select(MIRRORS).where(MIRRORS.c.receiver_psn_no == psn_no,
                                                           MIRRORS.c.closed.is_(False))
                                  .order_by(MIRRORS.c.year, MIRRORS.c.binding_id))
    return (
        [{"binding_id": g.binding_id, "year": g.year, "annual_quota_fen": g.annual_quota_fen,
          "used_fen": g.mirror_used_fen} for g in granted],
        [{"binding_id": m.binding_id, "year": m.year, "annual_quota_fen": m.annual_quota_fen,
          "used_fen": m.used_fen} for m in received],
    )
