"""Confirming a binding by SMS reply (issue 13, API.md "Citizen API"), for relatives without a smartphone.

The binding request's notice to the relative ends with a 6-digit code (issue_code, called where the relative's
node applies the PENDING_CONSENT snapshot). The SMS gateway posts each reply to `POST /v1/sms/inbound`
`{from_phone, text}`; `确认 <code>` from the relative's registered phone within 24 h confirms the binding at the
hub, recorded as confirmed by SMS. Five wrong codes from the relative's phone void their open codes (the app and
the counter still work). Anything else (another phone, not a confirmation, a binding no longer pending) is
answered `{handled: false, reason}` and changes nothing; only a wrong code is counted.

Codes are stored as keyed hashes (HMAC with the federation's ID-hash key), never in clear: the notice is the only
place the code is shown. The hub's confirm runs in `prepare`, outside the unit of work (bindings.py)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from services.province_node.adapters.confirmation_tables import BindingConfirmation, SmsConfirmationCode
from services.province_node.domain import notices
from services.province_node.domain.binding_replica import BindingState
from services.province_node.service_layer.bindings import BINDINGS, apply_snapshot, notify, view_of
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS
from shared.contracts.events import BindingSnapshot
from shared.db import ReadView, UnitOfWork
from shared.tables import table

CODES = table(SmsConfirmationCode)
CONFIRMATIONS = table(BindingConfirmation)
CODE_DIGITS = 6
CODE_TTL = timedelta(hours=24)  # the contract: a reply within 24 h of the request
MAX_WRONG_CODES = 5  # the contract: 5 wrong codes void it
_CONFIRM_REPLY = re.compile(r"^\s*确认\s*([0-9]{6})\s*$", re.ASCII)
PHONE_PATTERN = r"^\+?[0-9][0-9 -]{0,19}$"


def confirmation_code(text: str) -> re.Match[str] | None:
    """`确认 <6 digits>`; full-width digits and spaces (as older phones' input methods send) count as ASCII."""
    return _CONFIRM_REPLY.match(unicodedata.normalize("NFKC", text))


def _code_hash(ctx: NodeContext, binding_id: str, code: str) -> str:
    return hmac.new(ctx.settings.id_hash_key_bytes, f"sms-code|{binding_id}|{code}".encode(),
                    hashlib.sha256).hexdigest()


def phone_digits(phone: str) -> str:
    """The number as stored at import: digits only, without China's +86 / 0086 prefix."""
    digits = re.sub(r"\D", "", phone)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) - len(prefix) == 11:
            return digits[len(prefix):]
    return digits


async def issue_code(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot) -> str:
    """A fresh code for the relative of a binding request (once per binding: the snapshot is applied once)."""
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    now = ctx.clock.now()
    await uow.execute(sa.delete(CODES).where(CODES.c.binding_id == snapshot.binding_id))
    await uow.execute(sa.insert(CODES).values(
        binding_id=snapshot.binding_id, relative_psn_no=snapshot.relative_psn_no,
        code_hash=_code_hash(ctx, snapshot.binding_id, code), state="OPEN", wrong_codes=0,
        expires_at=now + CODE_TTL, created_at=now))
    return code


@dataclass(frozen=True)
class SmsPlan:
    """What prepare decided: a confirmed binding (snapshot), a wrong code from these persons, or nothing."""

    outcome: str  # CONFIRMED | WRONG_CODE | IGNORED
    reason: str | None = None
    snapshot: BindingSnapshot | None = None
    psn_nos: tuple[str, ...] = ()


async def plan(ctx: NodeContext, from_phone: str, text: str) -> SmsPlan:
    """Prepare of `POST /v1/sms/inbound`: who wrote, which open code matches, and the hub's confirm."""
    match = confirmation_code(text)
    if match is None:
        return SmsPlan("IGNORED", "NOT_A_CONFIRMATION")
    code = match.group(1)
    now = ctx.clock.now()
    async with ReadView(ctx.db) as view:
        # Several insured persons may share one phone (an elderly couple): each of their open codes counts.
        psn_nos = tuple(row.psn_no for row in await view.execute(
            sa.select(PERSONS.c.psn_no).where(PERSONS.c.phone == phone_digits(from_phone))))
        if not psn_nos:
            return SmsPlan("IGNORED", "UNKNOWN_PHONE")
        open_codes = (await view.execute(sa.select(CODES.c.binding_id, CODES.c.relative_psn_no, CODES.c.code_hash)
                                         .join(BINDINGS, BINDINGS.c.binding_id == CODES.c.binding_id)
                                         .where(CODES.c.relative_psn_no.in_(psn_nos), CODES.c.state == "OPEN",
                                                CODES.c.expires_at > now,
                                                BINDINGS.c.state == BindingState.PENDING_CONSENT)
                                         )).all()
    if not open_codes:
        return SmsPlan("IGNORED", "NO_PENDING_BINDING")
    for row in open_codes:
        if hmac.compare_digest(row.code_hash, _code_hash(ctx, row.binding_id, code)):
            # The hub is away: ApiError 503 goes up, and the gateway retries the delivery.
            snapshot = await ctx.hub.confirm_or_refusal(row.binding_id, row.relative_psn_no)
            if isinstance(snapshot, str):
                return SmsPlan("IGNORED", snapshot)  # e.g. BINDING_NOT_PENDING: ended meanwhile
            return SmsPlan("CONFIRMED", snapshot=snapshot, psn_nos=(row.relative_psn_no,))
    return SmsPlan("WRONG_CODE", "WRONG_CODE", psn_nos=tuple(sorted({row.relative_psn_no for row in open_codes})))


async def record_confirmation(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot, method: str,
                              clerk_id: str | None = None) -> None:
    """How the binding was confirmed, once (the first confirmation stands; confirming twice is harmless), and
    its SMS code closed. Run in the unit of work that applies the ACTIVE snapshot."""
    if snapshot.state != BindingState.ACTIVE or snapshot.relative_admdvs != ctx.admdvs:
        return
    await uow.execute(sa.update(CODES).where(CODES.c.binding_id == snapshot.binding_id, CODES.c.state == "OPEN")
                      .values(state="USED"))
    known = (await uow.execute(sa.select(CONFIRMATIONS.c.method).where(
        CONFIRMATIONS.c.binding_id == snapshot.binding_id))).first()
    if known is None:
        # Two confirmations at once (two replicas) race on the primary key; the loser's transaction is re-run
        # by run_retrying and then finds the first one's record.
        await uow.execute(sa.insert(CONFIRMATIONS).values(
            binding_id=snapshot.binding_id, relative_psn_no=snapshot.relative_psn_no, method=method,
            clerk_id=clerk_id, confirmed_at=ctx.clock.now()))


async def record_face_confirmation(ctx: NodeContext, uow: UnitOfWork, snapshot: BindingSnapshot
                                   ) -> dict[str, Any]:
    """The unit of work of the app's `:confirm` (face step-up): the replica, then how it was confirmed."""
    await apply_snapshot(ctx, uow, snapshot)
    await record_confirmation(ctx, uow, snapshot, "face")
    return view_of(snapshot)


async def confirmation_of(view: UnitOfWork | ReadView, binding_id: str) -> Any:
    return (await view.execute(sa.select(CONFIRMATIONS).where(CONFIRMATIONS.c.binding_id == binding_id))).first()


async def handle(ctx: NodeContext, uow: UnitOfWork, decided: SmsPlan) -> dict[str, Any]:
    """The unit of work of `POST /v1/sms/inbound`."""
    if decided.outcome == "CONFIRMED":
        assert decided.snapshot is not None
        await apply_snapshot(ctx, uow, decided.snapshot)
        await record_confirmation(ctx, uow, decided.snapshot, "sms")
        return {"handled": True, "binding_id": decided.snapshot.binding_id, "state": decided.snapshot.state}
    if decided.outcome == "WRONG_CODE":
        now = ctx.clock.now()
        # One wrong reply counts once on every open code of the phone's persons; the fifth voids them. Guarded
        # by state, so a code used or voided meanwhile (another replica) is not touched.
        counted = CODES.c.wrong_codes + 1
        voided = (await uow.execute(sa.update(CODES).where(
            CODES.c.relative_psn_no.in_(decided.psn_nos), CODES.c.state == "OPEN", CODES.c.expires_at > now,
            counted >= MAX_WRONG_CODES).values(wrong_codes=counted, state="VOID"))).rowcount
        await uow.execute(sa.update(CODES).where(
            CODES.c.relative_psn_no.in_(decided.psn_nos), CODES.c.state == "OPEN", CODES.c.expires_at > now)
            .values(wrong_codes=counted))
        if voided:
            for psn_no in decided.psn_nos:
                await notify(uow, ctx, psn_no, notices.sms_codes_voided())
    return {"handled": False, "reason": decided.reason}
