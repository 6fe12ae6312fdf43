"""Directory (keyed ID hash -> home province) and identity sessions."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from pydantic.config import JsonDict

from services.national_hub.adapters.tables import DirectoryPerson, KinshipFact
from services.national_hub.domain.kinship import RELATIONS
from services.national_hub.service_layer.context import HubContext
from shared import tokens
from shared.contracts.internal_api import DirectoryLookup, DirectoryLookupResult, DirectoryRegistrationBatch
from shared.credentials import decode_face_image, face_hash, verify_password
from shared.db import ByKeys, Prepared, ReadView, UnitOfWork
from shared.errors import ApiError
from shared.ids import InvalidIdNo, id_hash, name_hash
from shared.tables import table

DIRECTORY = table(DirectoryPerson)
KINSHIP = table(KinshipFact)


# What the use cases check with their own codes (INVALID_ID_NO, INVALID_RELATION), written into the schema.
ID_NO_SCHEMA: JsonDict = {"pattern": r"^\s*\d{17}[\dXx]\s*$"}


@dataclass(frozen=True)
class SignIn:
    """`POST /v1/identity/sessions` (entrypoints/api.SessionRequest)."""
    id_no: str
    name: str
    method: Literal["password", "face"]
    password: str | None
    face_image_b64: str | None


@dataclass(frozen=True)
class Relationship:
    """One line of `POST /v1/admin/kinship:import` (entrypoints/api.KinshipRelation): b is `relation` of a."""
    id_no_a: str
    id_no_b: str
    relation: str  # checked here (INVALID_RELATION)


# A node's import registers up to thousands of persons in one call: looked up with one statement each (ByKeys: the
# list is one parameter), written with one pipelined statement each for the new and the known ones (a statement
# per person took seconds on PostgreSQL, past the node's timeout for the call).
_KNOWN = ByKeys(DIRECTORY.c.id_hash, DIRECTORY.c.id_hash)
_HOLDERS = ByKeys(DIRECTORY.c.psn_no, DIRECTORY.c.psn_no, DIRECTORY.c.id_hash)
_NEW_PERSON = Prepared(sa.insert(DIRECTORY))
_PERSON_CHANGED = Prepared(sa.update(DIRECTORY).where(DIRECTORY.c.id_hash == sa.bindparam("b_id_hash")))


async def register(ctx: HubContext, uow: UnitOfWork, batch: DirectoryRegistrationBatch) -> dict[str, Any]:
    now = ctx.clock.now()
    # A person twice in one batch ends as the later registration says (as one after the other would).
    latest = {person.id_hash: person.model_dump() | {"updated_at": now} for person in batch.persons}
    await _refuse_taken_psn_nos(uow, latest)
    known = {row.id_hash for row in await _KNOWN.rows(uow, list(latest))}
    new = [values for id_hash_, values in latest.items() if id_hash_ not in known]
    changed = [values | {"b_id_hash": id_hash_} for id_hash_, values in latest.items() if id_hash_ in known]
    if new:
        await uow.execute(_NEW_PERSON, new)
    if changed:
        await uow.execute(_PERSON_CHANGED, changed)
    return {"registered": len(batch.persons)}


async def _refuse_taken_psn_nos(uow: UnitOfWork, latest: dict[str, dict[str, Any]]) -> None:
    """A psn_no names one person: two persons of the batch with one psn_no, or a psn_no the directory holds for
    another person, is refused (a 409 rather than the unique key's error, which no retry would cure)."""
    holder_of: dict[str, str] = {}
    for id_hash_, values in latest.items():
        if holder_of.setdefault(values["psn_no"], id_hash_) != id_hash_:
            raise ApiError(409, "PSN_NO_TAKEN", f"psn_no {values['psn_no']} is given to two persons of this batch")
    for row in await _HOLDERS.rows(uow, list(holder_of)):
        if holder_of[row.psn_no] != row.id_hash:
            raise ApiError(409, "PSN_NO_TAKEN", f"psn_no {row.psn_no} belongs to another person")


async def lookup(view: ReadView, query: DirectoryLookup) -> DirectoryLookupResult:
    """Where is the holder of this ID (02) or social-security card (03) insured? The gateway routes a till's
    payment to that province's node."""
    if query.id_hash is not None:
        condition = DIRECTORY.c.id_hash == query.id_hash
    else:
        condition = DIRECTORY.c.card_hash == query.card_hash
    row = (await view.execute(sa.select(DIRECTORY.c.psn_no, DIRECTORY.c.insuplc_admdvs, DIRECTORY.c.insured)
                              .where(condition).limit(1))).first()
    if row is None:
        raise ApiError(404, "PERSON_NOT_FOUND", "no insured person has this ID number or card in the directory")
    return DirectoryLookupResult(psn_no=row.psn_no, insuplc_admdvs=row.insuplc_admdvs, insured=row.insured)


def _authentication_failed() -> ApiError:
    return ApiError(401, "AUTHENTICATION_FAILED", "identity could not be verified")


async def open_session(ctx: HubContext, view: ReadView, body: SignIn) -> dict[str, Any]:
    key = ctx.settings.id_hash_key_bytes
    try:
        hashed = id_hash(key, body.id_no)
    except InvalidIdNo as exc:
        raise ApiError(422, "INVALID_ID_NO", "id_no fails the GB 11643 check") from exc
    person = (await view.execute(sa.select(DIRECTORY).where(DIRECTORY.c.id_hash == hashed))).first()
    if person is None or not hmac.compare_digest(person.name_hash, name_hash(key, body.name)):
        raise _authentication_failed()
    if body.method == "password":
        if not body.password or not person.password_hash or not verify_password(body.password,
                                                                                 person.password_hash):
            raise _authentication_failed()
        amr = ("pwd",)
    else:
        try:
            presented = face_hash(key, decode_face_image(body.face_image_b64 or ""))
        except ValueError as exc:
            raise _authentication_failed() from exc
        if not person.face_hash or not hmac.compare_digest(presented, person.face_hash):
            raise _authentication_failed()
        amr = ("face",)
    now_s = int(ctx.clock.now().timestamp())
    ttl_s = ctx.settings.token_ttl_s
    token = tokens.issue(ctx.settings.token_key.encode(),
                         tokens.Claims(person.psn_no, person.insuplc_admdvs, amr, now_s, now_s + ttl_s))
    return {"access_token": token, "token_type": "bearer", "psn_no": person.psn_no,
            "insuplc_admdvs": person.insuplc_admdvs, "amr": list(amr), "expires_in": ttl_s}


async def import_kinship(ctx: HubContext, uow: UnitOfWork, relations: list[Relationship]) -> dict[str, Any]:
    key = ctx.settings.id_hash_key_bytes
    rows = []
    for index, fact in enumerate(relations):
        if fact.relation not in RELATIONS:
            raise ApiError(422, "INVALID_RELATION", f"relations[{index}].relation must be one of {RELATIONS}")
        try:
            a, b = id_hash(key, fact.id_no_a), id_hash(key, fact.id_no_b)
        except InvalidIdNo as exc:
            raise ApiError(422, "INVALID_ID_NO", f"relations[{index}]: an ID number fails GB 11643") from exc
        if a == b:
            raise ApiError(422, "INVALID_RELATION", f"relations[{index}]: a person is not their own relative")
        rows.append((a, b, fact.relation))
    imported = 0
    for a, b, relation in dict.fromkeys(rows):
        exists = (await uow.execute(sa.select(KINSHIP.c.relation).where(
            KINSHIP.c.id_hash_a == a, KINSHIP.c.id_hash_b == b, KINSHIP.c.relation == relation))).first()
        if exists is None:
            await uow.execute(sa.insert(KINSHIP).values(id_hash_a=a, id_hash_b=b, relation=relation,
                                                        imported_at=ctx.clock.now()))
            imported += 1
    return {"imported": imported, "already_known": len(rows) - imported}
