"""The hub's directory registration (POST /internal/v1/directory/persons) writes a node's whole import with a few
statements (issue 9: a statement per person took the bench's 1,000-person imports past the node's 5 s timeout on
PostgreSQL). What it stores is what registering the persons one after another stored: new persons inserted,
known ones updated, a person twice in one batch as the later entry says."""

from __future__ import annotations

import sqlalchemy as sa

from services.national_hub.service_layer import directory
from shared.contracts.internal_api import DirectoryRegistration, DirectoryRegistrationBatch
from shared.db import ReadView
from tests.support.inprocess import InProcessFederation
from tests.support.stories import in_uow


def _person(n: int, *, name_hash: str = "n", insured: bool = True) -> DirectoryRegistration:
    return DirectoryRegistration(id_hash=f"h{n:05d}", id_no_masked="1101**********1234", name_hash=name_hash,
                                 psn_no=f"P{n:05d}", insuplc_admdvs="110000", insutype="310", insured=insured,
                                 pooling_admdvs="110100")


async def _check_batches(fed: InProcessFederation) -> None:
    first = [_person(n) for n in range(1200)]  # more than one lookup chunk
    body = await in_uow(fed.hub.db, lambda uow: directory.register(
        fed.hub, uow, DirectoryRegistrationBatch(persons=first)))
    assert body == {"registered": 1200}
    # Known and new persons in one batch, one of them twice: the later entry wins.
    second = [_person(5, name_hash="changed"), _person(1500), _person(7, insured=False),
              _person(5, name_hash="again")]
    body = await in_uow(fed.hub.db, lambda uow: directory.register(
        fed.hub, uow, DirectoryRegistrationBatch(persons=second)))
    assert body == {"registered": 4}
    table = directory.DIRECTORY
    async with ReadView(fed.hub.db) as view:
        count = (await view.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
        rows = {row.id_hash: row for row in (await view.execute(
            sa.select(table).where(table.c.id_hash.in_(["h00005", "h00007", "h01500", "h00006"])))).all()}
    assert count == 1201
    assert rows["h00005"].name_hash == "again"
    assert rows["h00007"].insured is False
    assert rows["h01500"].psn_no == "P01500"
    assert rows["h00006"].name_hash == "n" and rows["h00006"].insured is True


async def test_registration_batch(fed: InProcessFederation) -> None:
    await _check_batches(fed)


async def test_registration_batch_postgres(pg_fed: InProcessFederation) -> None:
    await _check_batches(pg_fed)
