"""Service-counter confirmation (issue 13, API.md "Citizen API"): clerks of this province's node confirm a binding
for a relative after checking the ID card in person.

Clerks are created by an operator (`POST /v1/admin/clerks`); each gets a bearer token shown once, kept here as
its SHA-256. A token names its province (`clk.<admdvs>.<secret>`), so a clerk of one province presenting it at
another province's node is told so (403 WRONG_PROVINCE) rather than merely not recognised.

`POST /v1/counter/bindings/{id}:confirm` `{relative_id_no, relative_name}`: the binding must be one whose
relative, insured at this node, is the person on the card (ID number and name); anything else is 404
BINDING_NOT_FOUND, as the contract says, so a counter cannot probe whose bindings exist. The hub confirms (in
`prepare`); the confirmation is recorded with the clerk's id."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from services.province_node.adapters import binding_repo
from services.province_node.adapters.binding_repo import BindingRow
from services.province_node.adapters.confirmation_tables import Clerk
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.service_layer.bindings import apply_snapshot, view_of
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS
from services.province_node.service_layer.sms_confirmation import record_confirmation
from shared.contracts.events import BindingSnapshot
from shared.contracts.internal_api import BindingActionRequest
from shared.db import ReadView, UnitOfWork
from shared.ids import InvalidIdNo, id_hash
from shared.tables import table

CLERKS = table(Clerk)
CLERK_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
TOKEN_PREFIX = "clk"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_clerk(ctx: NodeContext, uow: UnitOfWork, clerk_id: str, name: str) -> dict[str, Any]:
    # Two creations of one clerk id (two replicas) race on the primary key; the loser is re-run and answers 409.
    existing = (await uow.execute(sa.select(CLERKS.c.clerk_id).where(CLERKS.c.clerk_id == clerk_id))).first()
    if existing is not None:
        raise DomainError("CLERK_EXISTS", f"clerk {clerk_id} already exists at this node", 409)
    token = f"{TOKEN_PREFIX}.{ctx.admdvs}.{secrets.token_urlsafe(32)}"
    await uow.execute(sa.insert(CLERKS).values(clerk_id=clerk_id, name=name.strip(),
                                               token_hash=_token_hash(token), created_at=ctx.clock.now()))
    return {"clerk_id": clerk_id, "clerk_token": token}


async def clerk_of_token(ctx: NodeContext, token: str | None) -> str:
    """The clerk id behind a counter request's bearer token (the entrypoint's dependency calls this)."""
    if token is None:
        raise DomainError("UNAUTHENTICATED", "a clerk token from POST /v1/admin/clerks is required", 401)
    prefix, _, rest = token.partition(".")
    if prefix == TOKEN_PREFIX and rest.partition(".")[0] != ctx.admdvs:
        raise Forbidden("WRONG_PROVINCE", f"this is the node of {ctx.admdvs}; a clerk acts at their own node")
    async with ReadView(ctx.db) as view:
        row = (await view.execute(sa.select(CLERKS.c.clerk_id).where(
            CLERKS.c.token_hash == _token_hash(token)))).first()
    if row is None:
        raise DomainError("UNAUTHENTICATED", "clerk token refused", 401)
    clerk_id: str = row.clerk_id
    return clerk_id


@dataclass(frozen=True)
class CounterPlan:
    snapshot: BindingSnapshot
    clerk_id: str


def _not_found() -> NotFound:
    return NotFound("BINDING_NOT_FOUND", "no binding awaiting the consent of the person on this ID card")


async def confirm_at_hub(ctx: NodeContext, clerk_id: str, binding_id: str, relative_id_no: str,
                         relative_name: str) -> CounterPlan:
    """Prepare: the person on the card is the binding's relative, insured here; then the hub confirms."""
    try:
        relative_hash = id_hash(ctx.settings.id_hash_key_bytes, relative_id_no)
    except InvalidIdNo as exc:
        raise DomainError("INVALID_ID_NO", "relative_id_no fails the GB 11643 check") from exc
    async with ReadView(ctx.db) as view:
        binding: BindingRow | BindingSnapshot | None = await binding_repo.binding(view, binding_id)
        if binding is None and len(binding_id) <= 64:
            # The request may not have reached this node yet: the hub's registry knows.
            binding = await ctx.hub.binding(binding_id)
        if binding is None or binding.relative_admdvs != ctx.admdvs:
            raise _not_found()
        person = (await view.execute(sa.select(PERSONS.c.id_hash, PERSONS.c.name).where(
            PERSONS.c.psn_no == binding.relative_psn_no))).first()
    if person is None or not hmac.compare_digest(person.id_hash, relative_hash) \
            or person.name.strip() != relative_name.strip():
        raise _not_found()
    snapshot = await ctx.hub.binding_action(binding_id, "confirm",
                                            BindingActionRequest(psn_no=binding.relative_psn_no))
    return CounterPlan(snapshot, clerk_id)


async def record(ctx: NodeContext, uow: UnitOfWork, plan: CounterPlan) -> dict[str, Any]:
    await apply_snapshot(ctx, uow, plan.snapshot)
    await record_confirmation(ctx, uow, plan.snapshot, "counter", plan.clerk_id)
    return {**view_of(plan.snapshot), "confirmed_by_clerk_id": plan.clerk_id}
