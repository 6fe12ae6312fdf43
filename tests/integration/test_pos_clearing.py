"""The gateway -> hub contract of pharmacy clearing (issue 5 point 6): `pos.settlement.recorded.v1`.

What the gateway's real code commits to its outbox when a cross-province settlement starts or stops taking
effect is accepted by the hub's schema and handler (same shape as the golden sample, keyed by setl_id), and the
hub records each change once: the charge as the payer's province owing the pharmacy's, a cancel or reversal as
the same pair with the amount negated. Same-province and all-cash settlements, and news older than what the
gateway holds, publish nothing."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from services.national_hub.service_layer.clearing import OBLIGATIONS
from services.pharmacy_gateway.adapters.federation_http import DirectoryClient, InternalHttp, ProvinceNodes
from services.pharmacy_gateway.bootstrap import MIGRATIONS as GATEWAY_MIGRATIONS
from services.pharmacy_gateway.config import GatewaySettings
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.context import GatewayContext, InstitutionView, Registry
from shared.contracts import topics
from shared.contracts.events import PosSettlementRecorded, SettlementReported
from shared.contracts.internal_api import PosPayment
from shared.db import UnitOfWork, drop_schemas, open_database
from tests.support.inprocess import SECRETS, InProcessFederation, database_url
from tests.support.replicas import Gate, race
from tests.support.wire import Wired, accepted_as, consumer_accepts, load_sample

CHENGDU = InstitutionView("P51010000001", "成都康泰大药房", "510100", "PAAS0", "0" * 64)
YINCHUAN = InstitutionView("P64010000001", "银川新华药店", "640100", "PAAS1", "1" * 64)
PAYER_PROVINCE = "640000"


@dataclass
class Gateway:
    ctx: GatewayContext

    async def record(self, payment: PosPayment, institution: InstitutionView = CHENGDU) -> None:
        async with UnitOfWork(self.ctx.db) as uow:
            await settlements.record(self.ctx, uow, payment, institution=institution, payer_admdvs=PAYER_PROVINCE,
                                     msgid=payment.msgid)
            await uow.commit()


@pytest.fixture
async def gateway(fed: InProcessFederation, tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = GatewaySettings(home=tmp_path, **SECRETS)
    db = await open_database(settings, "gateway", GATEWAY_MIGRATIONS)
    # The clients are never used here: the node's answers are given to `record` directly.
    directory = DirectoryClient(InternalHttp("http://hub.contract-test", "t", 1.0, 1), 60.0)
    nodes = ProvinceNodes(settings.province_url, "t", 1.0, 1)
    try:
        yield Gateway(GatewayContext(settings=settings, db=db, clock=fed.clock, directory=directory, nodes=nodes,
                                     registry=Registry()))
    finally:
        await directory.close()
        await db.dispose()


def payment(fed: InProcessFederation, *, state: str = "SETTLED", version: int = 1, acct_fen: int = 5_000,
            wallet_fen: int = 1_930, quota_fen: int = 0, cash_fen: int = 300) -> PosPayment:
    medfee_fen = acct_fen + wallet_fen + quota_fen + cash_fen
    return PosPayment(setl_id="640000A1B2C3D4E5F60718293A4B5C", mdtrt_id="640000F00000000000000000000001",
                      msgid="P51010000001202501151000000001", psn_no="6400003141592653",
                      fixmedins_code=CHENGDU.fixmedins_code, insutype="310", state=state,
                      version=version, medfee_fen=medfee_fen, eligible_fen=medfee_fen - cash_fen,
                      acct_pay_fen=acct_fen, wallet_pay_fen=wallet_fen, quota_pay_fen=quota_fen,
                      cash_pay_fen=cash_fen, settled_at=fed.clock.now())


async def obligations(fed: InProcessFederation) -> list[tuple[Any, ...]]:
    async with UnitOfWork(fed.hub.db) as uow:
        rows = await uow.execute(sa.select(OBLIGATIONS.c.kind, OBLIGATIONS.c.ref, OBLIGATIONS.c.debtor_admdvs,
                                           OBLIGATIONS.c.creditor_admdvs, OBLIGATIONS.c.amount_fen)
                                 .order_by(OBLIGATIONS.c.id))
        return [tuple(row) for row in rows]


async def published(fed: InProcessFederation, gateway: Gateway) -> list[Wired]:
    """What the gateway published for clearing (its supervision reports: `reported`)."""
    return [w for w in await taken(fed, gateway) if w.type == PosSettlementRecorded.TYPE]


_SUPERVISION: dict[int, list[Wired]] = {}


async def taken(fed: InProcessFederation, gateway: Gateway) -> list[Wired]:
    wired = await fed.take_outbox(gateway.ctx.db)
    _SUPERVISION.setdefault(id(gateway), []).extend(w for w in wired if w.type == SettlementReported.TYPE)
    return wired


async def reported(fed: InProcessFederation, gateway: Gateway) -> list[SettlementReported]:
    """The supervision reports (issue 12) published so far: every change of effect, in- and cross-province."""
    await taken(fed, gateway)
    return [SettlementReported.model_validate(w.envelope.data) for w in _SUPERVISION.pop(id(gateway), [])]


async def test_charge_and_refund_reach_the_hub_once_each(fed: InProcessFederation, gateway: Gateway) -> None:
    charged = payment(fed)
    await gateway.record(charged)
    [wired] = await published(fed, gateway)
    accepted = consumer_accepts(wired)  # the hub's schema, the golden sample's shape
    assert isinstance(accepted, PosSettlementRecorded)
    assert (wired.topic, wired.key) == (topics.HUB_INBOUND, charged.setl_id)
    assert (accepted.effect, accepted.amount_fen, accepted.acct_pay_fen, accepted.mulaid_pay_fen) == \
        ("CHARGE", 6_930, 5_000, 1_930)
    await fed.deliver([wired])
    await fed.deliver([wired])  # Kafka is at least once
    fed.clock.advance(60)
    await gateway.record(payment(fed, state="CANCELLED", version=2))
    refund = await published(fed, gateway)
    await fed.deliver(refund)
    await fed.deliver(refund)
    assert await obligations(fed) == [
        ("POS", f"POS:{charged.setl_id}:1", "640000", "510000", 6_930),
        ("POS_REFUND", f"POS:{charged.setl_id}:2", "640000", "510000", -6_930),
    ]


async def test_redelivered_with_a_new_envelope_id_is_still_recorded_once(fed: InProcessFederation,
                                                                         gateway: Gateway) -> None:
    """The hub's inbox dedupes by envelope id; the obligation's ref dedupes the change itself."""
    await gateway.record(payment(fed))
    [wired] = await published(fed, gateway)
    copy = Wired(wired.topic, wired.key, wired.envelope.model_copy(update={"id": "another-envelope-id"}))
    await fed.deliver([wired])
    await fed.deliver([copy])
    assert len(await obligations(fed)) == 1


async def test_only_changes_of_effect_across_provinces_are_published(fed: InProcessFederation,
                                                                     gateway: Gateway) -> None:
    await gateway.record(payment(fed), institution=YINCHUAN)  # Ningxia payer, Ningxia pharmacy
    assert await published(fed, gateway) == []
    cash_only = payment(fed, acct_fen=0, wallet_fen=0).model_copy(update={"setl_id": "640000CASH0000000000000000001"})
    await gateway.record(cash_only)
    assert await published(fed, gateway) == []

    other = payment(fed).model_copy(update={"setl_id": "640000B00000000000000000000002"})
    await gateway.record(other.model_copy(update={"state": "REVERSED", "version": 2}))  # the reversal came first
    await gateway.record(other)  # the late settle answer (version 1) changes nothing
    assert await published(fed, gateway) == []
    async with UnitOfWork(gateway.ctx.db) as uow:
        row = await settlements.settlement(uow, other.setl_id)
    assert (row.state, row.version) == ("REVERSED", 2)

    # A cancel reversed (version 3) puts the settlement back in effect: one more charge.
    again = payment(fed).model_copy(update={"setl_id": "640000C00000000000000000000003"})
    await gateway.record(again)
    await gateway.record(again.model_copy(update={"state": "CANCELLED", "version": 2}))
    await gateway.record(again.model_copy(update={"state": "SETTLED", "version": 3}))
    await gateway.record(again.model_copy(update={"state": "CANCELLED", "version": 2}))  # stale
    effects = [accepted_as(w, PosSettlementRecorded) for w in await published(fed, gateway)]
    assert [(e.effect, e.version) for e in effects] == [("CHARGE", 1), ("REFUND", 2), ("CHARGE", 3)]
    # Supervision (issue 12) hears of every change of effect, in-province and cash-only ones too.
    reports = [(r.setl_id, r.effect, r.version, r.institution_admdvs) for r in await reported(fed, gateway)]
    assert reports == [(payment(fed).setl_id, "CHARGE", 1, "640100"), (cash_only.setl_id, "CHARGE", 1, "510100"),
                       (again.setl_id, "CHARGE", 1, "510100"), (again.setl_id, "REFUND", 2, "510100"),
                       (again.setl_id, "CHARGE", 3, "510100")], reports


def test_parts_must_add_up() -> None:
    data = load_sample("pos.settlement.recorded.v1.json")["data"]
    assert PosSettlementRecorded.model_validate(data).amount_fen == 6_930
    with pytest.raises(ValidationError):
        PosSettlementRecorded.model_validate(data | {"amount_fen": 6_931})
    with pytest.raises(ValidationError):
        PosSettlementRecorded.model_validate(data | {"effect": "MAYBE"})


async def test_reconciliation_totals_count_what_is_in_effect(fed: InProcessFederation, gateway: Gateway) -> None:
    await gateway.record(payment(fed))
    await gateway.record(payment(fed, cash_fen=0).model_copy(update={"setl_id": "640000D00000000000000000000004"}))
    cancelled = payment(fed).model_copy(update={"setl_id": "640000E00000000000000000000005"})
    await gateway.record(cancelled)
    await gateway.record(cancelled.model_copy(update={"state": "CANCELLED", "version": 2}))
    day = fed.clock.now().date()
    async with UnitOfWork(gateway.ctx.db) as uow:
        totals = await settlements.totals(uow, CHENGDU.fixmedins_code, day - timedelta(days=1), day, None, None)
    assert totals == {"count": 2, "medfee_fen": 7_230 + 6_930, "acct_pay_fen": 10_000, "mulaid_pay_fen": 3_860,
                      "cash_pay_fen": 300, "undone_count": 1}


async def test_a_settle_and_its_reversal_recorded_at_once_on_two_replicas_publish_each_change_once(
        pg_fed: InProcessFederation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas of the gateway hear of one settlement at once: one the reversal's answer (version 2), read
    nothing yet and paused; the other the settle's (version 1), inserted at once without the settlement's lock.
    The reversal's then finds the row it could not insert, takes it over as newer, and the hub hears the
    charge and its refund once each; nothing fails."""
    postgresql_url = database_url("postgresql")
    settings = GatewaySettings(home=tmp_path, **(SECRETS | {"database_url": postgresql_url}),
                               db_schema_prefix=f"g{secrets.token_hex(3)}_")
    replicas = [await open_database(settings, "gateway", GATEWAY_MIGRATIONS) for _ in range(2)]
    try:
        a, b = (Gateway(GatewayContext(settings=settings, db=db, clock=pg_fed.clock, directory=None,  # type: ignore[arg-type]
                                       nodes=None, registry=Registry())) for db in replicas)  # type: ignore[arg-type]
        settled = payment(pg_fed)
        gate = Gate()
        monkeypatch.setattr(settlements, "settlement", gate.wrap(settlements.settlement, after=True))
        outcomes = await race(gate, a.record(settled.model_copy(update={"state": "REVERSED", "version": 2})),
                              b.record(settled))
        assert outcomes == [None, None], outcomes
        async with UnitOfWork(a.ctx.db) as uow:
            row = await settlements.settlement(uow, settled.setl_id)
        assert (row.state, row.version) == ("REVERSED", 2)
        effects = [accepted_as(w, PosSettlementRecorded) for w in await pg_fed.take_outbox(a.ctx.db)
                   if w.type == PosSettlementRecorded.TYPE]
        assert sorted((e.effect, e.version) for e in effects) == [("CHARGE", 1), ("REFUND", 2)]
    finally:
        for db in replicas:
            await db.dispose()
        await drop_schemas(postgresql_url, [f"{settings.db_schema_prefix}gateway"])
