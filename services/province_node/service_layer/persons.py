"""Use cases about the node's people: admin import (registering each in the hub directory), monthly
credits, and the citizen's own view (`GET /v1/me`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field

from services.province_node.adapters import ledger_repo
from services.province_node.adapters.tables import Person
from services.province_node.domain import ledger
from services.province_node.domain.errors import DomainError, NotFound
from services.province_node.domain.person_status import pooling_in_province
from services.province_node.service_layer.context import NodeContext
from shared.contracts.internal_api import DirectoryRegistration, DirectoryRegistrationBatch
from shared.credentials import decode_face_image, face_hash, hash_password
from shared.db import Prepared, ReadView, UnitOfWork
from shared.ids import (
    InvalidIdNo,
    birth_date_of,
    card_hash,
    gender_of,
    id_hash,
    is_valid_id_no,
    is_valid_phone,
    mask_id_no,
    name_hash,
    normalize_id_no,
)
from shared.tables import table

PERSONS = table(Person)


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id_no: str
    name: str = Field(min_length=1, max_length=64)
    phone: str
    insutype: Literal["310", "390"]
    pooling_admdvs: str
    personal_account_fen: int = Field(default=0, ge=0, strict=True)
    card_no: str | None = Field(default=None, max_length=32)
    password: str | None = Field(default=None, min_length=4, max_length=64)
    face_image_b64: str | None = None


@dataclass(frozen=True)
class Credit:
    """One line of `POST /v1/admin/accounts:credit-monthly` (entrypoints/admin_api.MonthlyCredit)."""
    id_no: str
    amount_fen: int


def psn_no_for(admdvs: str, hashed_id: str) -> str:
    """Deterministic from the keyed ID hash, so a re-import (or a retry after a crash) names the same person."""
    return admdvs + str(int(hashed_id[:20], 16))[-10:].zfill(10)


@dataclass(frozen=True)
class ImportPlan:
    """What `prepare_import` checked and registered in the hub directory; `import_persons` stores it."""

    accepted: list[tuple[PersonIn, str, DirectoryRegistration]]
    rejected: list[dict[str, Any]]


async def prepare_import(ctx: NodeContext, persons: list[dict[str, Any]]) -> ImportPlan:
    """Prepare of `persons:import`, outside the write lock (run_idempotent): validation, hashing (deliberately
    slow for passwords) and the registration in the hub directory, so neither stalls this node's writes."""
    key = ctx.settings.id_hash_key_bytes
    rejected: list[dict[str, Any]] = []
    accepted: list[tuple[PersonIn, str, DirectoryRegistration]] = []
    for index, raw in enumerate(persons):
        try:
            person = PersonIn.model_validate(raw)
        except ValueError:
            rejected.append({"index": index, "code": _first_field_code(raw)})
            continue
        code = _person_refusal(ctx, person)
        if code:
            rejected.append({"index": index, "code": code})
            continue
        id_no = normalize_id_no(person.id_no)
        hashed = id_hash(key, id_no)
        try:
            face = face_hash(key, decode_face_image(person.face_image_b64)) if person.face_image_b64 else None
        except ValueError:
            rejected.append({"index": index, "code": "INVALID_FACE_IMAGE"})
            continue
        registration = DirectoryRegistration(
            id_hash=hashed, id_no_masked=mask_id_no(id_no), name_hash=name_hash(key, person.name),
            psn_no=psn_no_for(ctx.admdvs, hashed), insuplc_admdvs=ctx.admdvs, insutype=person.insutype,
            password_hash=hash_password(person.password, ctx.settings.password_hash_iterations)
            if person.password else None,
            face_hash=face,
            card_hash=card_hash(key, person.card_no) if person.card_no else None,
            pooling_admdvs=person.pooling_admdvs,
        )
        accepted.append((person, id_no, registration))
    if accepted:
        # A re-import refreshes contact data but never reinstates an insurance that ended here: the directory
        # keeps hearing what this node, the source of truth, holds.
        async with ReadView(ctx.db) as view:
            ended = set((await view.execute(sa.select(PERSONS.c.psn_no).where(
                PERSONS.c.psn_no.in_([reg.psn_no for _, _, reg in accepted]),
                PERSONS.c.insured == sa.false()))).scalars())
        accepted = [(person, id_no, reg.model_copy(update={"insured": reg.psn_no not in ended}))
                    for person, id_no, reg in accepted]
        # The hub's upsert is idempotent and the psn_no deterministic: if our commit after this fails, a
        # retried import converges on the same state.
        await ctx.hub.register_persons(DirectoryRegistrationBatch(persons=[reg for _, _, reg in accepted]))
    return ImportPlan(accepted, rejected)


async def import_persons(ctx: NodeContext, uow: UnitOfWork, plan: ImportPlan) -> dict[str, Any]:
    if plan.accepted:
        await ledger_repo.ensure_system_accounts(uow, ctx.clock.now())
        for person, id_no, reg in plan.accepted:
            await _upsert_person(ctx, uow, person, id_no, reg)
    return {"imported": len(plan.accepted), "rejected": plan.rejected}


def _first_field_code(raw: Any) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id_no"), str) and not is_valid_id_no(raw["id_no"]):
        return "INVALID_ID_NO"
    return "INVALID_PERSON"


def _person_refusal(ctx: NodeContext, person: PersonIn) -> str | None:
    if not is_valid_id_no(person.id_no):
        return "INVALID_ID_NO"
    if not is_valid_phone(person.phone):
        return "INVALID_PHONE"
    if not pooling_in_province(person.pooling_admdvs, ctx.admdvs):
        return "INVALID_POOLING_ADMDVS"
    if person.insutype == "390" and person.personal_account_fen:
        return "RESIDENT_HAS_NO_PERSONAL_ACCOUNT"
    return None


async def _upsert_person(ctx: NodeContext, uow: UnitOfWork, person: PersonIn, id_no: str,
                         reg: DirectoryRegistration) -> None:
    now = ctx.clock.now()
    existing = (await uow.execute(sa.select(PERSONS.c.psn_no).where(PERSONS.c.psn_no == reg.psn_no))).first()
    try:
        born: date | None = birth_date_of(id_no)
    except InvalidIdNo:
        born = None  # a valid check digit around an impossible date: the till shows no birth date
    fields = {"name": person.name, "phone": person.phone, "pooling_admdvs": person.pooling_admdvs,
              "card_no_hash": reg.card_hash, "gend": gender_of(id_no), "brdy": born}
    if existing:
        # A re-import refreshes contact data; the opening balance is only ever posted once. A move to another
        # pooling region is `:change-pooling` (it ends the person's bindings), never a side effect of a re-import.
        del fields["pooling_admdvs"]
        await uow.execute(sa.update(PERSONS).where(PERSONS.c.psn_no == reg.psn_no).values(**fields))
        return
    await uow.execute(sa.insert(PERSONS).values(
        psn_no=reg.psn_no, id_hash=reg.id_hash, id_no_masked=mask_id_no(id_no), insutype=person.insutype,
        insured=True, created_at=now, **fields))
    if person.insutype == "310":
        pa = ledger.personal_account(reg.psn_no)
        await ledger_repo.open_account(uow, pa, "PA", reg.psn_no, now)
        if person.personal_account_fen:
            await ledger_repo.post(uow, ledger.move("OPENING_BALANCE", reg.psn_no, ledger.FUNDING, pa,
                                                    person.personal_account_fen), now)


async def credit_monthly(ctx: NodeContext, uow: UnitOfWork, credits: list[Credit]) -> dict[str, Any]:
    """Payroll contributions into employees' personal accounts; all or nothing."""
    now = ctx.clock.now()
    total_fen = 0
    for index, credit in enumerate(credits):
        person = await person_by_id_no(ctx, uow, credit.id_no)
        if person.insutype != "310":
            raise DomainError("NOT_EMPLOYEE", f"credits[{index}]: only employees have a personal account")
        await ledger_repo.post(uow, ledger.move("MONTHLY_CREDIT", person.psn_no, ledger.FUNDING,
                                                ledger.personal_account(person.psn_no), credit.amount_fen), now)
        total_fen += credit.amount_fen
    return {"credited": len(credits), "total_fen": total_fen}


def no_such_person() -> NotFound:
    return NotFound("PERSON_NOT_FOUND", "no such person insured in this province")


async def person_by_id_no(ctx: NodeContext, view: UnitOfWork | ReadView, id_no: str) -> Any:
    try:
        hashed = id_hash(ctx.settings.id_hash_key_bytes, id_no)
    except InvalidIdNo as exc:
        raise DomainError("INVALID_ID_NO", "resident ID number fails the GB 11643 check") from exc
    row = (await view.execute(sa.select(PERSONS).where(PERSONS.c.id_hash == hashed))).first()
    if row is None:
        raise no_such_person()
    return row


_PERSON_BY_PSN_NO = Prepared(sa.select(PERSONS).where(PERSONS.c.psn_no == sa.bindparam("b_psn_no")))  # hot path


async def person_by_psn_no(view: UnitOfWork | ReadView, psn_no: str) -> Any:
    row = (await view.execute(_PERSON_BY_PSN_NO, {"b_psn_no": psn_no})).first()
    if row is None:
        raise no_such_person()
    return row


@dataclass(frozen=True)
class WalletOpened:
    balance_fen: int | None  # as ledger_repo.balance reads it
    created: bool  # False: it was open already (the same wallet)


async def open_wallet(ctx: NodeContext, uow: UnitOfWork, psn_no: str) -> WalletOpened:
    person = await person_by_psn_no(uow, psn_no)
    if not person.insured:
        raise DomainError("INSURANCE_ENDED", "insurance has ended; no wallet can be opened")
    wallet = ledger.wallet_account(psn_no)
    created = await ledger_repo.open_account(uow, wallet, "WALLET", psn_no, ctx.clock.now())
    balance_fen = await ledger_repo.balance(uow, wallet)
    return WalletOpened(balance_fen=balance_fen, created=created)
