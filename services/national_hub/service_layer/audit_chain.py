"""The federation's audit chains for operators (API.md "Audit chain"): every service instance journals its
changes (shared/audit.py) and sends its head here at least every 10 s; `GET /v1/ops/audit` lists each chain's
head and last checkpoint, `POST /v1/ops/audit:verify` has each service recompute its chain against the heads
kept here (and, at the nodes, replay its postings against its balances). A service that does not answer is
reported `ok: false` with reason "unreachable", never silently skipped."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from services.national_hub.adapters.ops_tables import AuditCheckpoint
from services.national_hub.config import HubSettings
from services.national_hub.service_layer.context import HubContext
from services.national_hub.service_layer.dead_letters import HUB, Peer, peers
from shared import audit
from shared.clock import iso
from shared.contracts.events import AuditCheckpointed
from shared.db import Database, ReadView, UnitOfWork
from shared.internal_http import InternalClient
from shared.tables import table

CHECKPOINTS = table(AuditCheckpoint)


async def on_checkpoint(ctx: HubContext, uow: UnitOfWork, msg: AuditCheckpointed) -> None:
    """Keep each distinct head once; the same head again only refreshes when it was last heard of. A head whose
    seq the hub already holds with another hash keeps the first hash (verification then reports the rewrite)."""
    now = ctx.clock.now()
    seen = await uow.execute(sa.update(CHECKPOINTS).where(
        CHECKPOINTS.c.service == msg.service, CHECKPOINTS.c.head_seq == msg.head_seq,
        CHECKPOINTS.c.head_hash == msg.head_hash).values(received_at=now))
    if seen.rowcount:
        return
    clash = (await uow.execute(sa.select(CHECKPOINTS.c.id).where(
        CHECKPOINTS.c.service == msg.service, CHECKPOINTS.c.head_seq == msg.head_seq))).first()
    if clash is None:
        await uow.execute(sa.insert(CHECKPOINTS).values(service=msg.service, head_seq=msg.head_seq,
                                                        head_hash=msg.head_hash, entries=msg.entries,
                                                        received_at=now))


def hub_checkpointer(ctx: HubContext) -> audit.Checkpointer:
    async def store(uow: UnitOfWork, checkpoint: AuditCheckpointed) -> None:
        await on_checkpoint(ctx, uow, checkpoint)

    return audit.Checkpointer(ctx.db, HUB, store)


async def _checkpoints(view: ReadView, service: str) -> list[tuple[int, str]]:
    rows = (await view.execute(sa.select(CHECKPOINTS.c.head_seq, CHECKPOINTS.c.head_hash).where(
        CHECKPOINTS.c.service == service))).all()
    return [(int(r.head_seq), str(r.head_hash)) for r in rows]


def _client(settings: HubSettings, peer: Peer) -> InternalClient:
    return InternalClient(settings.internal_token, settings.internal_http_timeout_s, base_url=peer.url,
                          unavailable_code=peer.unavailable_code, peer=peer.service)


async def _remote(settings: HubSettings, peer: Peer, method: str, path: str,
                  body: dict[str, Any] | None = None) -> dict[str, Any] | None:
    client = _client(settings, peer)
    try:
        if method == "GET":
            response = await client.get(path)
            if response.status_code != 200:
                return None
            answer: dict[str, Any] = response.json()
            return answer
        return await client.post(path, body or {})
    except Exception:
        return None
    finally:
        await client.close()


async def heads(ctx: HubContext) -> list[dict[str, Any]]:
    others = peers(ctx.settings)
    async with ReadView(ctx.db) as view:
        own = await audit.head(view)
        last = {row.service: row for row in (await view.execute(
            sa.select(CHECKPOINTS.c.service, sa.func.max(CHECKPOINTS.c.head_seq).label("seq"),
                      sa.func.max(CHECKPOINTS.c.received_at).label("at")).group_by(CHECKPOINTS.c.service))).all()}
    remote = await asyncio.gather(*(_remote(ctx.settings, p, "GET", "/internal/v1/audit/head") for p in others))
    out = []
    for service, current in [(HUB, {"entries": own.entries, "head_seq": own.head_seq, "head_hash": own.head_hash}),
                             *zip((p.service for p in others), remote, strict=True)]:
        checkpoint = last.get(service)
        row: dict[str, Any] = {"service": service, "entries": None, "head_seq": None, "head_hash": None}
        if current is not None:
            row |= {k: current[k] for k in ("entries", "head_seq", "head_hash")}
        else:
            row["reachable"] = False
        row |= {"last_checkpoint_seq": int(checkpoint.seq) if checkpoint else None,
                "last_checkpoint_at": iso(checkpoint.at) if checkpoint else None}
        out.append(row)
    return out


async def verify_all(ctx: HubContext) -> list[dict[str, Any]]:
    others = peers(ctx.settings)
    async with ReadView(ctx.db) as view:
        own_checkpoints = await _checkpoints(view, HUB)
        remote_checkpoints = [await _checkpoints(view, p.service) for p in others]
    own = await verify_own(ctx.db, own_checkpoints)
    answers = await asyncio.gather(*(
        _remote(ctx.settings, peer, "POST", "/internal/v1/audit:verify", {"checkpoints": cps})
        for peer, cps in zip(others, remote_checkpoints, strict=True)))
    out = [own]
    for peer, answer in zip(others, answers, strict=True):
        out.append(answer if answer is not None else
                   {"service": peer.service, "ok": False, "entries_checked": 0, "first_bad_seq": None,
                    "reason": "unreachable"})
    return out


async def verify_own(db: Database, checkpoints: list[tuple[int, str]]) -> dict[str, Any]:
    verdict = await audit.verify(db, audit.checkpoint_map(checkpoints), None)
    return verdict.view(HUB)


