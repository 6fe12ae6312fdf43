"""What a settle at the payer's node is decided on (`pos_repo.settle_facts`: the msgid, the person, the two
accounts locked and the spendable quotas, read in one statement): on each backend, the split takes the personal
account, then the quotas oldest first, the answer's balances are those after it, a repeated msgid gets its first
answer and moves nothing, and a person who cannot pay is refused with the stable code, nothing moved."""

from __future__ import annotations

from typing import Any

import pytest

from services.province_node.domain import ledger
from services.province_node.domain.errors import DomainError
from services.province_node.service_layer import person_status, pos_payments, quotas
from shared.contracts.internal_api import PosPaymentRequest, PosPaymentResult
from shared.db import Database, UnitOfWork
from tests.support.inprocess import DESTINATION, InProcessFederation
from tests.support.stories import GIVER_PA_FEN, active_binding, balance_fen, family, import_person

PHARMACY = "P62010000001"


async def committed(db: Database, work: Any) -> Any:
    async with UnitOfWork(db) as uow:
        result = await work(uow)
        await uow.commit()
    return result


def request(number: int, psn_no: str, fen: int, insutype: str = "390") -> PosPaymentRequest:
    return PosPaymentRequest(msgid=f"{PHARMACY}{number:018d}", psn_no=psn_no, insutype=insutype,
                             fixmedins_code=PHARMACY, medfee_fen=fen, eligible_fen=fen, use_accounts=True)


async def test_a_settle_pays_from_the_account_then_the_quota_and_once_per_msgid(any_fed: InProcessFederation) -> None:
    fed = any_fed
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await committed(fed.node(giver.admdvs).db, lambda uow: quotas.set_quota(
        fed.node(giver.admdvs), uow, giver.claims(fed.clock.now()), binding_id, 30_000))
    await fed.pump()
    # The mother (a resident) has no personal account: the quota her daughter set pays.
    node = fed.node(DESTINATION)
    first: PosPaymentResult = await committed(node.db, lambda uow: pos_payments.settle(
        node, uow, request(1, mother.psn_no, 12_000)))
    assert first.payment is not None
    assert (first.payment.acct_pay_fen, first.payment.quota_pay_fen, first.payment.cash_pay_fen) == (0, 12_000, 0)
    assert first.balances_after.quota_fen == 18_000 and first.balances_after.personal_account_fen is None
    again: PosPaymentResult = await committed(node.db, lambda uow: pos_payments.settle(
        node, uow, request(1, mother.psn_no, 12_000)))
    assert again == first  # the first answer, nothing moved again
    more: PosPaymentResult = await committed(node.db, lambda uow: pos_payments.settle(
        node, uow, request(2, mother.psn_no, 25_000)))
    assert more.payment is not None
    assert (more.payment.quota_pay_fen, more.payment.cash_pay_fen) == (18_000, 7_000)
    assert more.balances_after.quota_fen == 0

    # An employee pays from her personal account first.
    payer = await import_person(fed, DESTINATION, "62010219900101003", "张伟", insutype="310",
                                personal_account_fen=GIVER_PA_FEN)
    paid: PosPaymentResult = await committed(node.db, lambda uow: pos_payments.settle(
        node, uow, request(3, payer.psn_no, 4_000, insutype="310")))
    assert paid.payment is not None and paid.payment.acct_pay_fen == 4_000
    assert paid.balances_after.personal_account_fen == GIVER_PA_FEN - 4_000
    assert await balance_fen(fed, DESTINATION, ledger.personal_account(payer.psn_no)) == GIVER_PA_FEN - 4_000


async def test_who_cannot_pay_is_refused_and_nothing_moves(any_fed: InProcessFederation) -> None:
    fed = any_fed
    node = fed.node(DESTINATION)
    payer = await import_person(fed, DESTINATION, "62010219900101003", "张伟", insutype="310",
                                personal_account_fen=GIVER_PA_FEN)

    async def refusal(number: int, psn_no: str, insutype: str = "310") -> str:
        with pytest.raises(DomainError) as refused:
            await committed(node.db, lambda uow: pos_payments.settle(node, uow, request(number, psn_no, 1_000,
                                                                                          insutype)))
        return refused.value.code

    assert await refusal(1, "620000" + "9" * 10) == "PERSON_NOT_FOUND"
    assert await refusal(2, payer.psn_no, insutype="390") == "INSUTYPE_MISMATCH"
    await committed(node.db, lambda uow: person_status.end_insurance(node, uow, payer.id_no))
    assert await refusal(3, payer.psn_no) == "INSURANCE_ENDED"
    assert await balance_fen(fed, DESTINATION, ledger.personal_account(payer.psn_no)) == GIVER_PA_FEN
