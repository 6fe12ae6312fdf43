"""Operator changes of an insured person's status at their home node: the insurance ends (停保), or the person
moves to another pooling region of the province. The node, the source of truth for its people, updates the
person and, in the same transaction, tells the hub (PersonStatusChanged through the outbox); the hub ends every
binding the person is part of when the change calls for it, and refunds transfers still in flight on them.

What a person whose insurance ended can still do (decided here, as the NHSA 医保钱包 behaves: 停保 closes the
insurance relation, not the citizen's access to their own records): log in, see their accounts, bindings,
transfers and notices; what the personal account and wallet still hold stays theirs. Mutual aid ends with the
insurance: no new binding (GIVER_NOT_EMPLOYEE: no longer employee-insured; the hub refuses them as a relative),
no wallet opened (INSURANCE_ENDED), no transfer from them (BINDING_NOT_ACTIVE, refused here at once rather than
after the hub's BindingChanged arrives) and none credited to them (RECEIVER_NOT_INSURED)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from services.province_node.domain.errors import DomainError
from services.province_node.domain.person_status import binding_end_reason, pooling_in_province
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.persons import PERSONS, person_by_id_no
from shared.contracts import topics
from shared.contracts.events import PersonStatusChanged
from shared.db import UnitOfWork
from shared.outbox import emit


async def end_insurance(ctx: NodeContext, uow: UnitOfWork, id_no: str) -> dict[str, Any]:
    """`POST /v1/admin/persons/{id_no}:end-insurance`. Ending an insurance that already ended changes nothing."""
    person = await person_by_id_no(ctx, uow, id_no)
    return await _change(ctx, uow, person, insured=False, pooling_admdvs=person.pooling_admdvs)


async def change_pooling(ctx: NodeContext, uow: UnitOfWork, id_no: str, pooling_admdvs: str) -> dict[str, Any]:
    """`POST /v1/admin/persons/{id_no}:change-pooling`: a move within the province (another province imports
    the person itself). Into another pooling region it ends the person's bindings; within one, nothing else."""
    person = await person_by_id_no(ctx, uow, id_no)
    if not pooling_in_province(pooling_admdvs, ctx.admdvs):
        raise DomainError("INVALID_POOLING_ADMDVS",
                          f"pooling_admdvs must be a six-digit region code of this province ({ctx.admdvs})")
    return await _change(ctx, uow, person, insured=person.insured, pooling_admdvs=pooling_admdvs)


async def _change(ctx: NodeContext, uow: UnitOfWork, person: Any, *, insured: bool,
                  pooling_admdvs: str) -> dict[str, Any]:
    reason = binding_end_reason(insured_before=person.insured, insured_after=insured,
                                pooling_before=person.pooling_admdvs, pooling_after=pooling_admdvs)
    if (insured, pooling_admdvs) != (person.insured, person.pooling_admdvs):
        now = ctx.clock.now()
        await uow.execute(sa.update(PERSONS).where(PERSONS.c.psn_no == person.psn_no).values(
            insured=insured, pooling_admdvs=pooling_admdvs))
        # Told even when no binding ends (a move within the pool): the directory follows every change.
        await emit(uow, topics.HUB_INBOUND, person.psn_no, PersonStatusChanged(
            psn_no=person.psn_no, insuplc_admdvs=ctx.admdvs, insured=insured, pooling_admdvs=pooling_admdvs,
            previous_pooling_admdvs=person.pooling_admdvs, binding_end_reason=reason, changed_at=now),
            source=ctx.source, trace_id=person.psn_no)
    return {"psn_no": person.psn_no, "id_no_masked": person.id_no_masked, "insutype": person.insutype,
            "insured": insured, "pooling_admdvs": pooling_admdvs, "binding_end_reason": reason}
