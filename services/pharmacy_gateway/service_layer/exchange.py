"""One POS message from arrival to answer: x-tif authentication, the envelope, the nonce, and the message log
that makes a repeated msgid get its original answer.

Writes per message: a read-only message (9001, 1101, 2101, 3201) is answered first and then logged with its
nonce in one transaction. A money message (2102, 2103, 2601) is logged PENDING with its route, and its nonce,
before the payer's node is asked (`begin`), so that a repeat or a reversal finds it while it is on its way;
its answer is stored with what it changed in a second transaction (`finish`), which waits for the disk. On
SQLite the PENDING row does not: it is committed with the next group (shared/db/), and a restart that lost it
is covered by the node, which keeps every msgid it applied, and by 2601, which asks the payer's home province
(the start of the psn_no) about a msgid the log does not know. On PostgreSQL it is one statement with its
nonce, in autocommit (one round trip). A write that finds the nonce already used
refuses the message (401); one that finds the msgid already logged answers as the log says, whatever was
computed meanwhile (so a repeat gets its original answer even after the 医保码 it carried has expired)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import dml as postgresql_dml
from sqlalchemy.exc import IntegrityError

from services.pharmacy_gateway.adapters.tables import PosMessage, SeenNonce
from services.pharmacy_gateway.domain import tif_auth
from services.pharmacy_gateway.domain.wire import Refused, check_msgid, ref_msgid, wire_time
from services.pharmacy_gateway.service_layer.admin import token_hash
from services.pharmacy_gateway.service_layer.context import GatewayContext, InstitutionView
from shared.db import Prepared, PreparedInsertOrNothing, ReadView, UnitOfWork
from shared.tables import table

log = logging.getLogger("yibao.gateway.pos")

MESSAGES = table(PosMessage)
NONCES = table(SeenNonce)

# Built once: every money message runs these, and their compiled forms are reused (the values go in as
# parameters; `b_` names keep them apart from the columns an UPDATE sets).
_NEW_NONCE = Prepared(sa.insert(NONCES))
_MESSAGE = Prepared(sa.select(MESSAGES).where(MESSAGES.c.msgid == sa.bindparam("b_msgid")))
_NEW_MESSAGE = Prepared(sa.insert(MESSAGES))
_NEW_MESSAGE_OR_NOTHING = PreparedInsertOrNothing(MESSAGES, "msgid")
# PostgreSQL: the nonce consumed (a used one fails the whole statement) and the message logged unless its msgid
# is there already (then no row is returned), as one statement.
_NEW_MESSAGE_WITH_NONCE = Prepared(
    postgresql_dml.insert(MESSAGES).on_conflict_do_nothing(index_elements=["msgid"]).returning(MESSAGES.c.msgid)
    .add_cte(sa.insert(NONCES).values(paas_id=sa.bindparam("n_paas_id"), nonce=sa.bindparam("n_nonce"),
                                      seen_at=sa.bindparam("n_seen_at")).cte("nonce")))
_ANSWERED = Prepared(sa.update(MESSAGES).where(MESSAGES.c.msgid == sa.bindparam("b_msgid")))
# The answer of a message logged PENDING by this exchange, unless a 2601 marked it reversed meanwhile (the row
# lock of the UPDATE orders it after such a reversal's transaction, whose mark it then sees).
_ANSWERED_UNLESS_REVERSED = Prepared(sa.update(MESSAGES).where(MESSAGES.c.msgid == sa.bindparam("b_msgid"),
                                                              MESSAGES.c.state == "PENDING",
                                                              MESSAGES.c.reversed_by.is_(None)))

INFNOS = ("9001", "1101", "2101", "2102", "2103", "2601", "3201",
          # hospitals and clinics (service_layer/medical_handlers.py)
          "2201", "2202", "2203", "2204", "2205", "2206", "2207", "2208",
          "2401", "2301", "2302", "2402", "2303", "2304", "2305", "2404", "2405")


class Unauthenticated(Exception):
    """HTTP 401 {"infcode": -1, "err_msg": ...}: nothing happens."""


async def authenticate(ctx: GatewayContext, headers: Mapping[str, str]) -> tuple[InstitutionView, str]:
    """The institution whose paas_id signed these headers, and the nonce to consume."""
    paas_id = headers.get(tif_auth.HEADER_PAASID)
    if not paas_id:
        raise Unauthenticated("x-tif-paasid is required")
    paas_token = tif_auth.paas_token_for(ctx.token_key, paas_id)
    institution = ctx.registry.by_paas_id.get(paas_id)
    if institution is None or not hmac.compare_digest(token_hash(paas_token), institution.paas_token_hash):
        # Registered (again) through another replica since this one's registry was loaded: ask the table.
        institution = await ctx.registry.institution_from_table(ctx.db, paas_id)
    if institution is None:
        raise Unauthenticated("unknown x-tif-paasid: register the institution first")
    if not hmac.compare_digest(token_hash(paas_token), institution.paas_token_hash):
        raise Unauthenticated("these credentials are no longer valid: register the institution again")
    nonce = headers.get(tif_auth.HEADER_NONCE)
    try:
        # Real time, not the federation's (possibly shifted) clock: the window is about the two machines.
        tif_auth.check_headers(headers.get(tif_auth.HEADER_TIMESTAMP), nonce, headers.get(tif_auth.HEADER_SIGNATURE),
                               paas_token=paas_token, now_s=time.time(), window_s=ctx.settings.signature_window_s)
    except tif_auth.SignatureRefused as exc:
        raise Unauthenticated(str(exc)) from exc
    assert nonce is not None
    return institution, nonce


def parse_envelope(ctx: GatewayContext, raw: bytes, institution: InstitutionView) -> dict[str, Any]:
    if len(raw) > ctx.settings.max_message_bytes:
        raise Refused(f"the message is larger than {ctx.settings.max_message_bytes} bytes")
    try:
        # Decimal for every JSON number with a fraction: yuan are parsed exactly, never through a float.
        envelope = json.loads(raw, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused("the body is not JSON") from exc
    if not isinstance(envelope, dict):
        raise Refused("the body must be a JSON object (the national envelope)")
    infno = envelope.get("infno")
    if infno not in INFNOS:
        raise Refused(f"infno must be one of {', '.join(INFNOS)}")
    if envelope.get("fixmedins_code") != institution.fixmedins_code:
        raise Refused("fixmedins_code is not the institution of x-tif-paasid")
    check_msgid(envelope.get("msgid"), institution.fixmedins_code)
    if not isinstance(envelope.get("input"), dict):
        raise Refused("input must be an object")
    return envelope


async def check_signed_in(ctx: GatewayContext, envelope: dict[str, Any], institution: InstitutionView) -> None:
    """Every message but 9001 carries the sign_no of a sign-in of its institution (perhaps through another
    replica of the gateway)."""
    if envelope["infno"] != "9001" and not await ctx.registry.signed_in(ctx.db, institution.fixmedins_code,
                                                                         str(envelope.get("sign_no"))):
        raise Refused("sign in first (9001) and send its sign_no in every message")


# Envelope fields that say when and under which sign-in a message was sent, not what it asks: a till that resends
# a message after a lost answer stamps a new inf_time (its SDK does, to the second), and after a restart it may
# have signed in again. The resend is still the same message.
_SENDING_FIELDS = frozenset({"inf_time", "sign_no"})


def request_hash(envelope: dict[str, Any]) -> str:
    """The message's identity for "same msgid, same body": its content, whatever the key order or spacing, and
    whenever it was sent."""
    content = {key: value for key, value in envelope.items() if key not in _SENDING_FIELDS}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class NonceReplayed(Exception):
    pass


Build = Callable[[UnitOfWork, Any], Awaitable[dict[str, Any]]]


@dataclass
class Exchange:
    ctx: GatewayContext
    institution: InstitutionView
    paas_id: str
    nonce: str
    envelope: dict[str, Any]
    request_hash: str
    received_at: Any
    began: bool = False

    @property
    def msgid(self) -> str:
        return str(self.envelope["msgid"])

    @property
    def infno(self) -> str:
        return str(self.envelope["infno"])

    @property
    def input(self) -> dict[str, Any]:
        data: dict[str, Any] = self.envelope["input"]
        return data

    # ---------------------------------------------------------------------------------------------- answers

    def answer(self, output: dict[str, Any] | None = None, err_msg: str | None = None) -> dict[str, Any]:
        now = self.ctx.clock.now()
        return {"infcode": 0 if err_msg is None else -1,
                "inf_refmsgid": ref_msgid(self.institution.admdvs, now, next(self.ctx.serials)),
                "refmsg_time": wire_time(self.received_at), "respond_time": wire_time(now),
                "err_msg": err_msg, "output": output or {}}

    def refuse(self, err_msg: str) -> dict[str, Any]:
        return self.answer(None, err_msg)

    def replay_of(self, row: Any) -> dict[str, Any]:
        """What the log says to answer a message whose msgid is already there."""
        if row.request_hash is None:
            stored: dict[str, Any] = orjson.loads(row.response)
            return stored  # a reversal came first: the refusal it left for this msgid
        if row.request_hash != self.request_hash:
            return self.refuse(f"msgid {self.msgid} was already used for another message")
        if row.state == "PENDING":
            if row.reversed_by:
                return self.refuse(f"message {self.msgid} was reversed by 2601 {row.reversed_by}")
            return self.refuse(f"message {self.msgid} is being processed or its outcome is unknown; if in doubt "
                               f"reverse it with 2601 (omsgid {self.msgid})")
        replayed: dict[str, Any] = orjson.loads(row.response)
        return replayed

    # ---------------------------------------------------------------------------------------------- the log

    async def _consume_nonce(self, uow: UnitOfWork) -> None:
        """The first write of every unit of work here: a nonce already seen fails the primary key, and leaving
        the unit of work rolls back whatever else it began."""
        try:
            await uow.execute(_NEW_NONCE, {"paas_id": self.paas_id, "nonce": self.nonce,
                                           "seen_at": self.ctx.clock.now()})
        except IntegrityError as exc:
            raise NonceReplayed() from exc

    def _log_row(self, **values: Any) -> dict[str, Any]:
        """A new row of the message log: this message's identity, and `values`."""
        return {"msgid": self.msgid, "fixmedins_code": self.institution.fixmedins_code, "infno": self.infno,
                "request_hash": self.request_hash, "received_at": self.received_at, **values}

    async def _row(self, uow: UnitOfWork) -> Any:
        return await logged_message(uow, self.msgid)

    async def consume_nonce_only(self) -> None:
        """For a message refused before it could be logged: the nonce is spent all the same."""
        async with UnitOfWork(self.ctx.db) as uow:
            await self._consume_nonce(uow)
            await uow.commit()

    async def begin(self, payer_admdvs: str, setl_id: str | None = None) -> dict[str, Any] | None:
        """Log a money message PENDING with its route before the node is asked. Returns the answer to give
        instead when the msgid turned out to be logged already (a concurrent repeat or a reversal). On SQLite
        not waited for on disk (see the module's docstring): a settle's critical path keeps one fsync, its
        answer's."""
        pending = self._log_row(state="PENDING", payer_admdvs=payer_admdvs, setl_id=setl_id)
        if self.ctx.db.inline:
            async with UnitOfWork(self.ctx.db, durable=False) as uow:
                await self._consume_nonce(uow)
                # Logged unless the msgid is there already (then read, which is rare).
                logged = (await uow.execute(_NEW_MESSAGE_OR_NOTHING.on(uow), pending)).first()
                row = None if logged else await self._row(uow)
                await uow.commit()
        else:
            # PostgreSQL: the nonce and the log row in one statement, one round trip where a transaction took
            # four (a settle's CPU is mostly round trips, issue 9).
            try:
                logged = (await self.ctx.db.execute_alone(_NEW_MESSAGE_WITH_NONCE, pending | {
                    "n_paas_id": self.paas_id, "n_nonce": self.nonce, "n_seen_at": self.ctx.clock.now()})).first()
            except IntegrityError as exc:
                raise NonceReplayed() from exc
            row = None if logged else await read_message(self.ctx, self.msgid)
        if row is not None:
            return self.replay_of(row)
        self.began = True
        return None

    async def finish(self, build: Build) -> dict[str, Any]:
        """Store the answer `build` gives (it may write more in the same transaction, e.g. the settlement and
        its clearing event) and return it. `build` gets the log row when a 2601 marked it reversed meanwhile,
        else None (also when nothing was begun)."""
        if self.began:
            answered = await self._finish_began(build)
            if answered is not None:
                return answered
        async with UnitOfWork(self.ctx.db) as uow:
            if self.began:
                row = await self._row(uow)
            else:
                await self._consume_nonce(uow)
                row = await self._row(uow)
                if row is not None:
                    await uow.commit()
                    return self.replay_of(row)
            response = await build(uow, row)
            values = {"state": "DONE", "response": orjson.dumps(response), "answered_at": self.ctx.clock.now()}
            if self.began:
                await uow.execute(_ANSWERED, {"b_msgid": self.msgid, **values})
            else:
                await uow.execute(_NEW_MESSAGE, self._log_row(**values))
            await uow.commit()
        return response

    async def _finish_began(self, build: Build) -> dict[str, Any] | None:
        """`finish` for a message this exchange logged PENDING, without reading its row back (a settle's
        statements are the gateway's CPU, issue 9): only a 2601 can have changed the row since, by marking it
        reversed, so the answer is built for the row as begun and stored only where no reversal is marked (the
        commit's condition: for a settle, with its settlement and events, one statement on PostgreSQL). Where
        one is (rare), nothing of this transaction stays and None says to build again from the row."""
        async with UnitOfWork(self.ctx.db) as uow:
            response = await build(uow, None)
            values = {"state": "DONE", "response": orjson.dumps(response), "answered_at": self.ctx.clock.now()}
            if not await uow.commit(condition=(_ANSWERED_UNLESS_REVERSED, {"b_msgid": self.msgid, **values})):
                return None
        return response

    async def finish_with(self, response: dict[str, Any]) -> dict[str, Any]:
        async def constant(_uow: UnitOfWork, _row: Any) -> dict[str, Any]:
            return response

        return await self.finish(constant)


async def logged_message(view: UnitOfWork | ReadView, msgid: str) -> Any:
    """The message log's row for `msgid`, or None."""
    return (await view.execute(_MESSAGE, {"b_msgid": msgid})).first()


async def read_message(ctx: GatewayContext, msgid: str) -> Any:
    async with ReadView(ctx.db) as view:
        return await logged_message(view, msgid)


async def forget_old_nonces(ctx: GatewayContext) -> int:
    """Nonces older than twice the window can never be presented again with a fresh timestamp."""
    cutoff = ctx.clock.now() - timedelta(seconds=2 * ctx.settings.signature_window_s)
    async with UnitOfWork(ctx.db) as uow:
        deleted = (await uow.execute(sa.delete(NONCES).where(NONCES.c.seen_at < cutoff))).rowcount
        await uow.commit()
    return int(deleted or 0)
