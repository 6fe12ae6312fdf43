"""Quotas (共济额度). The giver's node reserves part of the personal account for the year (QUOTA account);
the relative's node holds a mirror it spends locally at the pharmacy or on premiums, so no call to the
giver's province is made while a patient waits. Spends flow back as events (the giver's node moves the
reserve to clearing); lowering or ending a quota shrinks the mirror first, then the giver's node releases
what can no longer be spent (domain/quota_rules.py). Both sides' states and transitions are the pure types of
domain/quota.py; each change is journaled (shared/audit.py, kind `quota.state`) in the transaction making it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.mutual_aid_tables import QuotaGrant, QuotaMirror
from services.province_node.domain import binding_replica, ledger, notices, quota_rules
from services.province_node.domain.errors import DomainError, Forbidden
from services.province_node.domain.quota import JOURNAL_KIND, Grant, Mirror, QuotaEvent
from services.province_node.service_layer.bindings import binding_for_giver, notify
from services.province_node.service_layer.context import NodeContext
from shared import audit
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
                    amount: Any) -> dict[str, Any]:
    annual_quota_fen = quota_rules.parse_quota_fen(amount)
    now = ctx.clock.now()
    if not claims.has_face_step_up(now.timestamp()):
        raise Forbidden("STEP_UP_REQUIRED", "setting a quota needs a face verification in the last 5 minutes")
    binding = await binding_for_giver(uow, binding_id, claims.psn_no)
    binding_replica.check_active(binding.state)
    year = quota_rules.quota_year(now)
    # Locked: two changes of one quota (two replicas), or a change beside the binding's end, take turns, so
    # the reserve is topped up once and each version is given once. A first grant's insert race ends in a
    # unique-key conflict, and the request runs again (shared/db/sessions.py run_retrying).
    row = (await uow.execute(_GRANT_LOCKED, {"b_binding_id": binding_id, "b_year": year})).first()
    reserve = ledger.quota_reserve_account(binding_id, year)
    if row is None:
        await ledger_repo.open_account(uow, reserve, "QUOTA", claims.psn_no, now)
        grant = Grant.new(binding_id, year)
        await uow.execute(sa.insert(GRANTS).values(
            binding_id=binding_id, year=year, giver_psn_no=claims.psn_no, relative_psn_no=binding.relative_psn_no,
            relative_admdvs=binding.relative_admdvs, annual_quota_fen=grant.annual_quota_fen, version=grant.version,
            state=grant.state, updated_at=now))
    else:
        grant = Grant.of(row)
    grant = grant.set_limit(annual_quota_fen)
    reserved_fen = await ledger_repo.balance(uow, reserve) or 0
    to_reserve_fen = grant.reserve_to_add_fen(reserved_fen)
    if to_reserve_fen:
        # A raise is reserved now (the guarded posting refuses it if the personal account is short).
        await ledger_repo.post(uow, ledger.move("QUOTA_RESERVE", binding_id, ledger.personal_account(claims.psn_no),
                                                reserve, to_reserve_fen), now)
    await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == binding_id, GRANTS.c.year == year).values(
        annual_quota_fen=grant.annual_quota_fen, version=grant.version, updated_at=now))
    await audit.append(uow, JOURNAL_KIND, binding_id, grant.journal(QuotaEvent.SET, reserved_fen=to_reserve_fen),
                       now)
    await emit(uow, topics.HUB_INBOUND, binding_id, QuotaSet(
        binding_id=binding_id, giver_psn_no=claims.psn_no, giver_admdvs=ctx.admdvs,
        relative_psn_no=binding.relative_psn_no, relative_admdvs=binding.relative_admdvs, year=year,
        annual_quota_fen=grant.annual_quota_fen, version=grant.version), source=ctx.source, trace_id=binding_id)
    return {"binding_id": binding_id, "year": year, "annual_quota_fen": grant.annual_quota_fen,
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
    row = (await uow.execute(_GRANT_LOCKED, {"b_binding_id": msg.binding_id, "b_year": msg.year})).first()
    if row is None:
        return
    now = ctx.clock.now()
    before = Grant.of(row)
    grant = before.mirrored(msg.annual_quota_fen, msg.used_fen, msg.closed)
    reserve = ledger.quota_reserve_account(msg.binding_id, msg.year)
    reserved_fen = await ledger_repo.balance(uow, reserve) or 0
    give_back_fen = grant.release_fen(reserved_fen)
    if give_back_fen:
        await ledger_repo.post(uow, ledger.move("QUOTA_RELEASE", msg.binding_id, reserve,
                                                ledger.personal_account(row.giver_psn_no), give_back_fen), now)
    await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == msg.binding_id, GRANTS.c.year == msg.year)
                      .values(mirror_quota_fen=grant.mirror_quota_fen, mirror_used_fen=grant.mirror_used_fen,
                              state=grant.state, updated_at=now))
    if grant != before or give_back_fen:
        await audit.append(uow, JOURNAL_KIND, msg.binding_id,
                           grant.journal(QuotaEvent.MIRRORED, released_fen=give_back_fen), now)


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
    for row in rows:
        grant = Grant.of(row).end()
        await uow.execute(sa.update(GRANTS).where(GRANTS.c.binding_id == grant.binding_id,
                                                  GRANTS.c.year == grant.year).values(
            state=grant.state, annual_quota_fen=grant.annual_quota_fen, version=grant.version, updated_at=now))
        await audit.append(uow, JOURNAL_KIND, grant.binding_id, grant.journal(QuotaEvent.ENDING), now)
        await emit(uow, topics.HUB_INBOUND, grant.binding_id, QuotaSet(
            binding_id=grant.binding_id, giver_psn_no=row.giver_psn_no, giver_admdvs=ctx.admdvs,
            relative_psn_no=row.relative_psn_no, relative_admdvs=row.relative_admdvs, year=grant.year,
            annual_quota_fen=grant.annual_quota_fen, version=grant.version, closing=True), source=ctx.source,
            trace_id=grant.binding_id)
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
    row = await _locked_mirror(uow, msg.binding_id, msg.year)
    now = ctx.clock.now()
    if row is None:
        mirror = Mirror.first(msg.binding_id, msg.year, msg.annual_quota_fen, msg.closing, msg.version)
        await uow.execute(sa.insert(MIRRORS).values(
            binding_id=msg.binding_id, year=msg.year, receiver_psn_no=msg.relative_psn_no,
            giver_psn_no=msg.giver_psn_no, giver_admdvs=msg.giver_admdvs, annual_quota_fen=mirror.annual_quota_fen,
            used_fen=mirror.used_fen, version=mirror.version, closed=mirror.closed, updated_at=now))
    else:
        applied = Mirror.of(row).apply_set(msg.annual_quota_fen, msg.closing, msg.version)
        if applied is None:
            return  # an older instruction than the one applied
        mirror = applied
        await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == msg.binding_id,
                                                   MIRRORS.c.year == msg.year).values(
            annual_quota_fen=mirror.annual_quota_fen, closed=mirror.closed, version=mirror.version, updated_at=now))
    await audit.append(uow, JOURNAL_KIND, msg.binding_id,
                       mirror.journal(QuotaEvent.SET, requested_fen=msg.annual_quota_fen, closing=msg.closing), now)
    if not msg.closing and msg.annual_quota_fen:
        await notify(uow, ctx, msg.relative_psn_no, notices.quota_granted(msg.annual_quota_fen, msg.year))
    await _report(ctx, uow, msg.binding_id, msg.year)


async def close_mirrors_of_binding(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> None:
    """The binding ended: nothing more is spent from its quotas here, and the giver's node learns what was."""
    rows = (await uow.execute(for_update(sa.select(MIRRORS).where(MIRRORS.c.binding_id == snapshot.binding_id,
                                                                  MIRRORS.c.closed.is_(False))))).all()
    now = ctx.clock.now()
    for row in rows:
        mirror = Mirror.of(row).close()
        await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == mirror.binding_id,
                                                   MIRRORS.c.year == mirror.year).values(
            annual_quota_fen=mirror.annual_quota_fen, closed=mirror.closed, updated_at=now))
        await audit.append(uow, JOURNAL_KIND, mirror.binding_id, mirror.journal(QuotaEvent.ENDED), now)
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


async def _change_use(ctx: NodeContext, uow: UnitOfWork, binding_id: str, delta_fen: int, use: QuotaUse,
                      ref: str) -> None:
    """Spend (delta > 0) or give back (delta < 0) on the mirror, post the relative's side of it, and tell
    the giver's node. The counterpart of the pharmacy or premium leg is CLEARING / PREMIUM_INCOME."""
    now = ctx.clock.now()
    year = quota_rules.quota_year(now)
    row = await _locked_mirror(uow, binding_id, year)
    if row is None:
        raise DomainError("QUOTA_NOT_FOUND", "no quota of this binding for this year")
    before = Mirror.of(row)
    mirror = before.spend(delta_fen) if delta_fen > 0 else before.give_back(-delta_fen)
    values: dict[str, Any] = {"used_fen": mirror.used_fen, "updated_at": now}
    if mirror.annual_quota_fen != before.annual_quota_fen:
        values["annual_quota_fen"] = mirror.annual_quota_fen  # a closed quota stays at what was spent
    await uow.execute(sa.update(MIRRORS).where(MIRRORS.c.binding_id == binding_id, MIRRORS.c.year == year)
                      .values(**values))
    counterpart = ledger.PREMIUM_INCOME if use == "premium" else ledger.CLEARING
    spend_id = "Q" + uuid.uuid4().hex
    event = QuotaEvent.SPENT if delta_fen > 0 else QuotaEvent.RETURNED
    await audit.append(uow, JOURNAL_KIND, binding_id, mirror.journal(
        event, amount_fen=abs(delta_fen), use=use, spend_id=spend_id, payment_ref=ref[:80]), now)
    if delta_fen > 0:
        posting = ledger.move("QUOTA_SPEND", spend_id, ledger.QUOTA_DUE, counterpart, delta_fen)
    else:
        posting = ledger.move("QUOTA_SPEND_RETURN", spend_id, counterpart, ledger.QUOTA_DUE, -delta_fen)
    await ledger_repo.post(uow, posting, now)
    await emit(uow, topics.HUB_INBOUND, binding_id, QuotaSpent(
        spend_id=spend_id, binding_id=binding_id, year=year, giver_admdvs=row.giver_admdvs,
        relative_admdvs=ctx.admdvs, amount_fen=delta_fen, use=use,
        occurred_at=now), source=ctx.source, trace_id=binding_id)
    await _report(ctx, uow, binding_id, year)


async def spend_quota(ctx: NodeContext, uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str,
                      use: QuotaUse = "pharmacy") -> None:
    """Spend from a received quota's mirror (inside the caller's transaction); `ref` names the payment."""
    await _change_use(ctx, uow, binding_id, amount_fen, use, ref)


async def return_quota_spend(ctx: NodeContext, uow: UnitOfWork, binding_id: str, amount_fen: int, ref: str,
                             use: QuotaUse = "pharmacy") -> None:
    """Undo a spend (POS or medical cancel or reversal)."""
    await _change_use(ctx, uow, binding_id, -amount_fen, use, ref)


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
