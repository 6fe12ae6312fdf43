"""Stories over the in-process federation: people imported at their nodes, kinship at the hub, bindings
created and confirmed, wallets opened, transfers sent, and the conservation of money checked afterwards. Each
helper runs the real use cases in committed units of work, as the entrypoints do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from services.national_hub.service_layer import directory as hub_directory
from services.province_node.adapters import ledger_repo
from services.province_node.domain import ledger
from services.province_node.service_layer import bindings as node_bindings
from services.province_node.service_layer import persons as node_persons
from services.province_node.service_layer import transfers as node_transfers
from shared.db import Database, UnitOfWork
from shared.ids import id_hash, make_id_no
from shared.tokens import Claims
from tests.support.inprocess import DESTINATION, SOURCE, InProcessFederation


@dataclass(frozen=True)
class Person:
    id_no: str
    name: str
    admdvs: str
    psn_no: str

    def claims(self, now: datetime, *, face: bool = True) -> Claims:
        """What the hub's identity service would have issued: face-verified just now unless told otherwise."""
        now_s = int(now.timestamp())
        return Claims(self.psn_no, self.admdvs, ("face",) if face else ("pwd",), now_s, now_s + 1800)


T = TypeVar("T")


async def in_uow(db: Database, use_case: Callable[[UnitOfWork], Awaitable[T]]) -> T:
    """A use case in one committed unit of work, as run_idempotent runs it after its `prepare` (which the
    helpers here await first, outside the unit of work, as run_idempotent does)."""
    async with UnitOfWork(db) as uow:
        answer = await use_case(uow)
        await uow.commit()
    return answer


async def end_binding(fed: InProcessFederation, party: Person, binding_id: str) -> dict[str, Any]:
    """`DELETE /v1/bindings/{id}` by either party, at that party's node."""
    ctx = fed.node(party.admdvs)
    snapshot = await node_bindings.end_at_hub(ctx, party.claims(fed.clock.now()), binding_id)
    view = await in_uow(ctx.db, lambda uow: node_bindings.record_change(ctx, uow, snapshot))
    assert view["state"] == "ENDED", view
    ended: dict[str, Any] = view
    return ended


async def import_person(fed: InProcessFederation, admdvs: str, first17: str, name: str, *, insutype: str,
                        personal_account_fen: int = 0, password: str | None = None,
                        face_image_b64: str | None = None) -> Person:
    """The node's admin import (which registers the person in the hub directory over internal HTTP)."""
    ctx = fed.node(admdvs)
    id_no = make_id_no(first17)
    raw: dict[str, Any] = {"id_no": id_no, "name": name, "phone": "13800138000", "insutype": insutype,
                           "pooling_admdvs": admdvs[:2] + "0100", "personal_account_fen": personal_account_fen,
                           "password": password, "face_image_b64": face_image_b64}
    plan = await node_persons.prepare_import(ctx, [raw])
    body = await in_uow(ctx.db, lambda uow: node_persons.import_persons(ctx, uow, plan))
    assert body == {"imported": 1, "rejected": []}, body
    psn_no = node_persons.psn_no_for(admdvs, id_hash(ctx.settings.id_hash_key_bytes, id_no))
    return Person(id_no=id_no, name=name, admdvs=admdvs, psn_no=psn_no)


async def import_kinship(fed: InProcessFederation, a: Person, b: Person, relation: str) -> None:
    """Operator import at the hub: `b` is `relation` of `a`."""
    relations = [hub_directory.Relationship(id_no_a=a.id_no, id_no_b=b.id_no, relation=relation)]
    async with UnitOfWork(fed.hub.db) as uow:
        await hub_directory.import_kinship(fed.hub, uow, relations)
        await uow.commit()


GIVER_PA_FEN = 100_000


async def family(fed: InProcessFederation, *, mother_admdvs: str = DESTINATION) -> tuple[Person, Person]:
    """A Ningxia employee with 1000 yuan in her personal account, and her mother (a resident, no personal
    account) insured in Gansu, known to the kinship registry as her parent."""
    giver = await import_person(fed, SOURCE, "64010219850312002", "王芳", insutype="310",
                                personal_account_fen=GIVER_PA_FEN, password="secret-pw")
    mother = await import_person(fed, mother_admdvs, mother_admdvs[:4] + "0219580701004", "李秀英",
                                 insutype="390", face_image_b64="ZmFjZS1vZi10aGUtbW90aGVy")
    await import_kinship(fed, giver, mother, "parent")
    return giver, mother


async def create_binding(fed: InProcessFederation, giver: Person, relative: Person,
                         relation: node_bindings.Relation) -> str:
    ctx = fed.node(giver.admdvs)
    body = node_bindings.BindingRequest(relative_id_no=relative.id_no, relative_name=relative.name,
                                        relation=relation)
    snapshot = await node_bindings.request_binding(ctx, giver.claims(fed.clock.now()), body,
                                                   f"{giver.psn_no}:{relative.psn_no}")
    created = await in_uow(ctx.db, lambda uow: node_bindings.record_created(ctx, uow, snapshot))
    assert created["state"] == "PENDING_CONSENT", created
    binding_id: str = created["binding_id"]
    return binding_id


async def confirm_binding(fed: InProcessFederation, relative: Person, binding_id: str) -> None:
    ctx = fed.node(relative.admdvs)
    snapshot = await node_bindings.confirm_at_hub(ctx, relative.claims(fed.clock.now()), binding_id)
    view = await in_uow(ctx.db, lambda uow: node_bindings.record_change(ctx, uow, snapshot))
    assert view["state"] == "ACTIVE", view


async def active_binding(fed: InProcessFederation, giver: Person, relative: Person,
                         relation: node_bindings.Relation = "parent") -> str:
    """Created by the giver, confirmed by the relative (face step-up), replicated to both nodes by events."""
    binding_id = await create_binding(fed, giver, relative, relation)
    await fed.pump()
    await confirm_binding(fed, relative, binding_id)
    await fed.pump()
    return binding_id


async def open_wallet(fed: InProcessFederation, person: Person) -> None:
    ctx = fed.node(person.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        opened = await node_persons.open_wallet(ctx, uow, person.psn_no)
        await uow.commit()
    assert opened.created


async def send_transfer(fed: InProcessFederation, giver: Person, binding_id: str, amount_fen: int) -> str:
    ctx = fed.node(giver.admdvs)
    async with UnitOfWork(ctx.db) as uow:
        body = await node_transfers.send_transfer(ctx, uow, giver.claims(fed.clock.now()), binding_id, amount_fen)
        await uow.commit()
    assert body["state"] == "ACCEPTED", body
    transfer_id: str = body["transfer_id"]
    return transfer_id


async def balance_fen(fed: InProcessFederation, admdvs: str, account_id: str) -> int | None:
    async with UnitOfWork(fed.node(admdvs).db) as uow:
        return await ledger_repo.balance(uow, account_id)


async def transfer_out_state(fed: InProcessFederation, giver: Person, transfer_id: str) -> str:
    async with UnitOfWork(fed.node(giver.admdvs).db) as uow:
        row = (await uow.execute(sa.select(node_transfers.OUT.c.state).where(
            node_transfers.OUT.c.transfer_id == transfer_id))).one()
    state: str = row.state
    return state


async def assert_money_conserved(fed: InProcessFederation, citizen_total_fen: int) -> None:
    """Every node's journal balances; nothing is left in flight; what one province's clearing account owes,
    another's is owed; the citizens together hold what was funded."""
    citizens = clearing = 0
    for admdvs, ctx in fed.nodes.items():
        async with UnitOfWork(ctx.db) as uow:
            assert await ledger_repo.journal_is_balanced(uow), f"journal of {admdvs} does not balance"
            totals = await ledger_repo.totals_by_kind(uow)
        assert sum(totals.values()) == 0, totals
        assert totals.get(ledger.IN_FLIGHT, 0) == 0, f"{admdvs} still has money in flight: {totals}"
        citizens += totals.get("PA", 0) + totals.get("WALLET", 0)
        clearing += totals.get(ledger.CLEARING, 0)
    assert clearing == 0
    assert citizens == citizen_total_fen
