"""The hub's directory registration (POST /internal/v1/directory/persons) writes a node's whole import with a few
statements (issue 9: a statement per person took the bench's 1,000-person imports past the node's 5 s timeout on
PostgreSQL). What it stores is what registering the persons one after another stored: new persons inserted,
known ones updated, a person twice in one batch as the later entry says."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from services.national_hub.service_layer import directory
from shared.contracts.internal_api import DirectoryRegistration, DirectoryRegistrationBatch
from shared.db import ReadView
from shared.errors import ApiError
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


async def test_a_psn_no_of_another_person_is_refused_and_nothing_is_registered(any_fed: InProcessFederation) -> None:
    """A psn_no names one person: given to a second person (in the batch, or already in the directory), the
    whole batch is refused with 409 PSN_NO_TAKEN and nothing of it is stored (the unique key's error was a 500
    after five retries)."""
    fed = any_fed
    await in_uow(fed.hub.db, lambda uow: directory.register(fed.hub, uow, DirectoryRegistrationBatch(
        persons=[_person(1)])))
    taken = _person(2).model_copy(update={"psn_no": "P00001"})
    twice = [_person(3), _person(4).model_copy(update={"psn_no": "P00003"})]
    for persons in ([_person(5), taken], twice):
        batch = DirectoryRegistrationBatch(persons=persons)
        with pytest.raises(ApiError) as refused:
            await in_uow(fed.hub.db, lambda uow: directory.register(fed.hub, uow, batch))  # noqa: B023
        assert (refused.value.status, refused.value.code) == (409, "PSN_NO_TAKEN")
    async with ReadView(fed.hub.db) as view:
        stored = sorted((await view.execute(sa.select(directory.DIRECTORY.c.psn_no))).scalars())
    assert stored == ["P00001"]
    # The same person registered again under its own psn_no is an update, not a conflict.
    await in_uow(fed.hub.db, lambda uow: directory.register(fed.hub, uow, DirectoryRegistrationBatch(
        persons=[_person(1, name_hash="renamed")])))


@pytest.mark.parametrize("field, value", [("id_hash", ""), ("id_hash", "h" * 65), ("psn_no", ""),
                                          ("insuplc_admdvs", "64000"), ("insutype", "3100"),
                                          ("id_no_masked", "x" * 19), ("card_hash", "c" * 65)])
def test_registrations_beyond_the_directory_columns_are_refused_at_validation(field: str, value: str) -> None:
    fields = _person(1).model_dump() | {field: value}
    with pytest.raises(ValidationError):
        DirectoryRegistration(**fields)
