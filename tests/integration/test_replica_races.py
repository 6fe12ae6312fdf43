"""Two replicas of one service on one PostgreSQL schema race on the same money (review scale_out.md §1 B1-B12,
§8 S1/S2, §9 "Layer 1"). Deterministic: no timing luck, no load.

A replica is a second `Database` opened on the same schema (no migrations), in a copy of the service's context:
what two processes of one service are, as far as the database can tell. Each race pauses its first task between
its read and its write (a wrapped function the use case awaits there waits for an `asyncio.Event`), starts the
second task on the other replica, gives it time to reach the database, then lets the first go on. Code that
locks what it reads (`FOR UPDATE`), guards its UPDATEs by state, or takes an advisory lock makes the second wait
or lose, and the invariant holds; code that reads, thinks and writes lets both act on the same old state, and
the test fails (each test was run against the code before commit 535cfe1 and failed there, unless its docstring
says otherwise).

Skipped without YIBAO_TEST_POSTGRES_URL (the `pg_fed` fixture): SQLite has one writer per instance anyway."""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from starlette.requests import Request

from services.national_hub.service_layer import bindings as hub_bindings
from services.national_hub.service_layer import messages as hub_messages
from services.national_hub.service_layer import ops as hub_ops
from services.national_hub.service_layer import transfers as hub_transfers
from services.national_hub.service_layer.context import HubContext
from services.province_node.adapters import ledger_repo, transfer_repo
from services.province_node.domain import ledger, quota_rules
from services.province_node.domain.errors import DomainError
from services.province_node.service_layer import bindings as node_bindings
from services.province_node.service_layer import messages as node_messages
from services.province_node.service_layer import pos_payments, premiums, quotas
from services.province_node.service_layer import transfers as node_transfers
from services.province_node.service_layer.context import NodeContext
from shared.contracts import topics
from shared.contracts.envelope import Envelope, new_envelope
from shared.contracts.events import BindingChanged, TransferCancel, TransferCreditResult
from shared.contracts.internal_api import (
    BindingActionRequest,
    PosCancelRequest,
    PosPaymentRequest,
    PosPaymentResult,
    PosReverseRequest,
    PremiumQuotaRequest,
    PremiumReservationRequest,
)
from shared.contracts.mutual_aid_events import PremiumPaid, QuotaSet
from shared.db import Database, UnitOfWork
from shared.idempotency import run_idempotent
from shared.ids import id_hash
from shared.kafka import filter_new
from shared.messaging_tables import OutboxMessage
from shared.outbox import OutboxRelay, add_to_outbox
from shared.tables import table
from tests.support.inprocess import DESTINATION, SOURCE, TRANSFER_TIMEOUT_S, InProcessFederation
from tests.support.replicas import RACE_TIMEOUT_S, Gate, Replicas, race, until_blocked_in_postgresql
from tests.support.stories import (
    GIVER_PA_FEN,
    Person,
    active_binding,
    assert_money_conserved,
    balance_fen,
    create_binding,
    end_binding,
    family,
    import_person,
    open_wallet,
    send_transfer,
)
from tests.support.wire import Wired, accepted_as, consumer_accepts

PHARMACY = "P51010000001"
_OUTBOX = table(OutboxMessage)


async def committed(db: Database, work: Callable[[UnitOfWork], Awaitable[Any]]) -> Any:
    async with UnitOfWork(db) as uow:
        result = await work(uow)
        await uow.commit()
    return result


async def consume(db: Database, handle: Callable[[UnitOfWork, list[Envelope]], Awaitable[None]],
                  messages: list[Wired]) -> None:
    """What the consumer loop of one replica does with a batch: inbox dedupe, handle, commit."""
    for wired in messages:
        consumer_accepts(wired)
    async with UnitOfWork(db) as uow:
        fresh = await filter_new(uow, [wired.envelope for wired in messages])
        if fresh:
            await handle(uow, fresh)
        await uow.commit()


def node_consumer(ctx: NodeContext) -> Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]:
    return functools.partial(node_messages.handle_batch, ctx)


def hub_consumer(ctx: HubContext) -> Callable[[UnitOfWork, list[Envelope]], Awaitable[None]]:
    return functools.partial(hub_messages.handle_batch, ctx)


def of_type(messages: list[Wired], event_type: str) -> list[Wired]:
    return [wired for wired in messages if wired.type == event_type]


async def scalar(db: Database, query: Any) -> Any:
    async with UnitOfWork(db) as uow:
        return (await uow.execute(query)).scalar()


def msgid(number: int) -> str:
    """A 30-character POS msgid: the institution code, then a serial."""
    return f"{PHARMACY}{number:018d}"


# ------------------------------------------------------------------------------------------ B2: POS


async def test_pos_cancel_and_reversal_on_two_replicas_refund_once(pg_fed: InProcessFederation,
                                                                   replicas: Replicas,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """B2: a 2103 cancel on one node replica and a 2601 reversal of the settle on the other: the money comes
    back once, and the settlement ends REVERSED (the reversal voids the cancelled settlement)."""
    payer = await import_person(pg_fed, SOURCE, "64010219850312002", "王芳", insutype="310",
                                personal_account_fen=GIVER_PA_FEN)
    node_a = pg_fed.node(SOURCE)
    node_b = await replicas.node(SOURCE)
    settled: PosPaymentResult = await committed(node_a.db, lambda uow: pos_payments.settle(node_a, uow,
        PosPaymentRequest(msgid=msgid(1), psn_no=payer.psn_no, insutype="310", fixmedins_code=PHARMACY,
                          medfee_fen=5_000, eligible_fen=5_000, use_accounts=True)))
    assert settled.payment is not None and settled.payment.acct_pay_fen == 5_000
    setl_id = settled.payment.setl_id
    pa = ledger.personal_account(payer.psn_no)
    assert await balance_fen(pg_fed, SOURCE, pa) == GIVER_PA_FEN - 5_000

    gate = Gate()
    monkeypatch.setattr(pos_payments, "_move", gate.wrap(pos_payments._move))  # after the cancel's read
    cancel = PosCancelRequest(msgid=msgid(2), setl_id=setl_id, psn_no=payer.psn_no, fixmedins_code=PHARMACY)
    reverse = PosReverseRequest(msgid=msgid(3), omsgid=msgid(1), oinfno="2102", psn_no=payer.psn_no,
                                fixmedins_code=PHARMACY)
    cancelled, reversed_ = await race(
        gate,
        committed(node_a.db, lambda uow: pos_payments.cancel(node_a, uow, cancel)),
        committed(node_b.db, lambda uow: pos_payments.reverse(node_b, uow, reverse)))
    assert isinstance(cancelled, PosPaymentResult), cancelled
    assert isinstance(reversed_, PosPaymentResult), reversed_
    assert sorted([cancelled.effect, reversed_.effect]) == ["NONE", "REFUND"], "refunded twice (or never)"
    assert await balance_fen(pg_fed, SOURCE, pa) == GIVER_PA_FEN
    assert await balance_fen(pg_fed, SOURCE, ledger.CLEARING) == 0
    state = await scalar(node_a.db, sa.select(pos_payments.PAYMENTS.c.state).where(
        pos_payments.PAYMENTS.c.setl_id == setl_id))
    assert state == "REVERSED"


# ------------------------------------------------------------------------------------------ B3: held transfer


async def test_accept_and_hub_cancel_on_two_replicas_end_the_transfer_once(pg_fed: InProcessFederation,
                                                                            replicas: Replicas,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """B3: the receiver accepts a held transfer on one destination replica while the other handles the hub's
    TransferCancel (the binding ended): exactly one of credited / cancelled, and every answer the destination
    gives the hub says the same."""
    held = pg_fed.node(DESTINATION)
    held.settings = held.settings.model_copy(update={"transfer_accept_required_provinces": DESTINATION})
    assert held.settings.receivers_must_accept
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await open_wallet(pg_fed, mother)
    transfer_id = await send_transfer(pg_fed, giver, binding_id, 30_000)
    await pg_fed.pump()
    in_state = sa.select(node_transfers.IN.c.state).where(node_transfers.IN.c.transfer_id == transfer_id)
    assert await scalar(held.db, in_state) == "AWAITING_ACCEPTANCE"

    # The giver ends the binding: the hub asks the destination to cancel. Held back: the BindingChanged, so the
    # destination does not know yet and the receiver may still accept.
    await end_binding(pg_fed, giver, binding_id)
    from_hub = await pg_fed.take_outbox(pg_fed.hub.db)
    cancels = of_type(from_hub, TransferCancel.TYPE)
    assert len(cancels) == 1
    other = await replicas.node(DESTINATION)

    gate = Gate()
    monkeypatch.setattr(node_transfers, "_binding_ended", gate.wrap(node_transfers._binding_ended))
    accepted, cancelled = await race(
        gate,
        committed(held.db, lambda uow: node_transfers.accept_transfer(held, uow, mother.claims(pg_fed.clock.now()),
                                                                     transfer_id)),
        consume(other.db, node_consumer(other), cancels))
    assert cancelled is None, cancelled
    answers = of_type(await pg_fed.take_outbox(held.db), TransferCreditResult.TYPE)
    outcomes = {accepted_as(wired, TransferCreditResult).outcome for wired in answers}
    assert len(outcomes) == 1, f"the destination answered the hub both ways: {outcomes}"
    wallet = await balance_fen(pg_fed, DESTINATION, ledger.wallet_account(mother.psn_no))
    if isinstance(accepted, dict):  # the use case answers the transfer view
        assert outcomes == {"CREDITED"} and wallet == 30_000
    else:
        assert isinstance(accepted, DomainError), accepted
        assert outcomes == {"REJECTED"} and wallet == 0

    await pg_fed.deliver(from_hub)
    await pg_fed.deliver(answers)
    await pg_fed.pump()
    hub_state = await scalar(pg_fed.hub.db, sa.select(hub_transfers.TRANSFERS.c.state).where(
        hub_transfers.TRANSFERS.c.transfer_id == transfer_id))
    giver_pa = await balance_fen(pg_fed, SOURCE, ledger.personal_account(giver.psn_no))
    if wallet:
        assert (hub_state, giver_pa) == ("CREDITED", GIVER_PA_FEN - 30_000)
    else:
        assert (hub_state, giver_pa) == ("REFUNDED", GIVER_PA_FEN)
    await assert_money_conserved(pg_fed, GIVER_PA_FEN)


# ------------------------------------------------------------------------------------------ B4: hub timeout


async def test_hub_result_and_timeout_scan_on_two_replicas_decide_once(pg_fed: InProcessFederation,
                                                                       replicas: Replicas,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """B4: the timeout scan on one hub replica has read a ROUTED transfer past its deadline when the
    destination's CREDITED answer is decided on the other. The transfer stays CREDITED (the scan's cancel may
    go out, but never overwrites the decision), with one obligation; the destination's second CREDITED answer
    (to the cancel) decides nothing again."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await open_wallet(pg_fed, mother)
    transfer_id = await send_transfer(pg_fed, giver, binding_id, 30_000)
    await pg_fed.deliver(await pg_fed.take_outbox(pg_fed.node(SOURCE).db))  # TransferRequested -> hub
    await pg_fed.deliver(await pg_fed.take_outbox(pg_fed.hub.db))  # TransferCredit -> destination
    credited = of_type(await pg_fed.take_outbox(pg_fed.node(DESTINATION).db), TransferCreditResult.TYPE)
    assert [accepted_as(w, TransferCreditResult).outcome for w in credited] == ["CREDITED"]
    pg_fed.clock.advance(TRANSFER_TIMEOUT_S + 1)  # the answer arrives as the hub's deadline passes
    hub_a = pg_fed.hub
    hub_b = await replicas.hub()
    transfers_t = hub_transfers.TRANSFERS
    obligations_t = hub_transfers.OBLIGATIONS

    gate = Gate()
    monkeypatch.setattr(hub_transfers, "_request_cancels", gate.wrap(hub_transfers._request_cancels))
    scanned, decided = await race(
        gate,
        committed(hub_b.db, lambda uow: hub_transfers.cancel_overdue(hub_b, uow)),
        consume(hub_a.db, hub_consumer(hub_a), credited))
    assert decided is None, decided
    assert not isinstance(scanned, BaseException), scanned
    state_of = sa.select(transfers_t.c.state).where(transfers_t.c.transfer_id == transfer_id)
    assert await scalar(hub_a.db, state_of) == "CREDITED", "the timeout overwrote the destination's decision"
    count_of = sa.select(sa.func.count()).select_from(obligations_t).where(obligations_t.c.ref == transfer_id)
    assert await scalar(hub_a.db, count_of) == 1

    await pg_fed.pump()  # any cancel goes out; the destination answers CREDITED again; the hub decides nothing
    assert await scalar(hub_a.db, state_of) == "CREDITED"
    assert await scalar(hub_a.db, count_of) == 1
    await assert_money_conserved(pg_fed, GIVER_PA_FEN)
    assert await balance_fen(pg_fed, DESTINATION, ledger.wallet_account(mother.psn_no)) == 30_000


# ------------------------------------------------------------------------------------------ B5, B9: quotas


async def set_quota_at(ctx: NodeContext, giver: Person, now: Any, binding_id: str, annual_quota_fen: int) -> Any:
    return await committed(ctx.db, lambda uow: quotas.set_quota(ctx, uow, giver.claims(now), binding_id,
                                                                annual_quota_fen))


async def test_two_quota_spends_on_two_replicas_never_pass_the_quota(pg_fed: InProcessFederation,
                                                                     replicas: Replicas,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """B5: two tills spend one quota (60,000) on two replicas of the relative's node, 40,000 each: one is
    refused; `used_fen` counts exactly the spends that were posted and never passes the quota."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await set_quota_at(pg_fed.node(SOURCE), giver, pg_fed.clock.now(), binding_id, 60_000)
    await pg_fed.pump()
    node_a = pg_fed.node(DESTINATION)
    node_b = await replicas.node(DESTINATION)

    gate = Gate()
    for name in ("_locked_mirror", "_mirror"):  # the spend's read of the mirror (locked since 535cfe1)
        if hasattr(quotas, name):
            monkeypatch.setattr(quotas, name, gate.wrap(getattr(quotas, name), after=True))
    outcomes = await race(
        gate,
        committed(node_a.db, lambda uow: quotas.spend_quota(node_a, uow, binding_id, 40_000, "SETL-A")),
        committed(node_b.db, lambda uow: quotas.spend_quota(node_b, uow, binding_id, 40_000, "SETL-B")))
    spent = [outcome for outcome in outcomes if outcome is None]
    refused = [outcome for outcome in outcomes if isinstance(outcome, DomainError)]
    assert len(spent) + len(refused) == 2, outcomes
    year = quota_rules.quota_year(pg_fed.clock.now())
    used_fen = await scalar(node_a.db, sa.select(quotas.MIRRORS.c.used_fen).where(
        quotas.MIRRORS.c.binding_id == binding_id, quotas.MIRRORS.c.year == year))
    posted_fen = -(await balance_fen(pg_fed, DESTINATION, ledger.QUOTA_DUE) or 0)
    assert used_fen <= 60_000
    assert posted_fen == used_fen == 40_000 * len(spent), "a spend was posted but not counted (lost update)"
    assert len(spent) == 1

    await pg_fed.pump()  # the giver's node moves what was spent out of the reserve (it refuses more than that)
    assert await balance_fen(pg_fed, SOURCE, ledger.quota_reserve_account(binding_id, year)) == 20_000


async def test_two_quota_raises_on_two_replicas_reserve_once(pg_fed: InProcessFederation, replicas: Replicas,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """B9: the giver raises one quota from 20,000 to 50,000 twice at once (two replicas of the giver's node): the
    reserve is topped up once, to 50,000, and the two QuotaSet carry different versions."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    node_a = pg_fed.node(SOURCE)
    await set_quota_at(node_a, giver, pg_fed.clock.now(), binding_id, 20_000)
    await pg_fed.pump()
    node_b = await replicas.node(SOURCE)

    gate = Gate()
    monkeypatch.setattr(ledger_repo, "balance", gate.wrap(ledger_repo.balance, after=True))  # the reserve read
    now = pg_fed.clock.now()
    answers = await race(gate, set_quota_at(node_a, giver, now, binding_id, 50_000),
                         set_quota_at(node_b, giver, now, binding_id, 50_000))
    assert all(isinstance(answer, dict) and answer["annual_quota_fen"] == 50_000 for answer in answers), answers
    year = quota_rules.quota_year(now)
    assert await balance_fen(pg_fed, SOURCE, ledger.quota_reserve_account(binding_id, year)) == 50_000
    assert await balance_fen(pg_fed, SOURCE, ledger.personal_account(giver.psn_no)) == GIVER_PA_FEN - 50_000
    quota_sets = of_type(await pg_fed.take_outbox(node_a.db), QuotaSet.TYPE)
    versions = sorted(accepted_as(wired, QuotaSet).version for wired in quota_sets)
    assert versions == [2, 3], f"one version given to two changes: {versions}"


# ------------------------------------------------------------------------------------------ B8, S1, S2: premiums


def reservation_for(pg_fed: InProcessFederation, payer: Person, beneficiary: Person,
                    amount_fen: int) -> PremiumReservationRequest:
    ctx = pg_fed.node(beneficiary.admdvs)
    return PremiumReservationRequest(payment_id="P" + uuid.uuid4().hex,
                                     beneficiary_id_hash=id_hash(ctx.settings.id_hash_key_bytes, beneficiary.id_no),
                                     year=pg_fed.clock.now().year, amount_fen=amount_fen,
                                     payer_psn_no=payer.psn_no, payer_admdvs=payer.admdvs)


def premium_paid(pg_fed: InProcessFederation, request: PremiumReservationRequest, beneficiary: Person) -> PremiumPaid:
    return PremiumPaid(payment_id=request.payment_id, beneficiary_psn_no=beneficiary.psn_no,
                       beneficiary_admdvs=beneficiary.admdvs, payer_psn_no=request.payer_psn_no,
                       payer_admdvs=request.payer_admdvs, year=request.year, amount_fen=request.amount_fen,
                       paid_at=pg_fed.clock.now())


async def premium_state(ctx: NodeContext, payment_id: str) -> str | None:
    state: str | None = await scalar(ctx.db, sa.select(premiums.PAYMENTS.c.state).where(
        premiums.PAYMENTS.c.payment_id == payment_id))
    return state


async def test_premium_expiry_and_payment_on_two_replicas_book_it_once(pg_fed: InProcessFederation,
                                                                       replicas: Replicas,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """B8: the PremiumPaid for a reservation just past its time is booked on one replica while the expiry runs on
    the other: the payment is booked once and the year's slot is PAID (not freed for a second payer)."""
    giver, mother = await family(pg_fed)
    node_a = pg_fed.node(DESTINATION)
    request = reservation_for(pg_fed, giver, mother, 38_000)
    await committed(node_a.db, lambda uow: premiums.reserve(node_a, uow, request))
    pg_fed.clock.advance(node_a.settings.premium_reservation_ttl_s + 1)
    node_b = await replicas.node(DESTINATION)
    paid = premium_paid(pg_fed, request, mother)

    gate = Gate()
    monkeypatch.setattr(ledger_repo, "post", gate.wrap(ledger_repo.post))  # after the payment's read
    booked, _expired = await race(
        gate,
        committed(node_a.db, lambda uow: premiums.on_premium_paid(node_a, uow, paid)),
        committed(node_b.db, lambda uow: premiums.expire_reservations(
            node_b, uow, node_b.settings.premium_reservation_ttl_s)))
    assert booked is None, booked
    assert await premium_state(node_a, request.payment_id) == "PAID", "the paid slot was freed"
    assert await balance_fen(pg_fed, DESTINATION, ledger.PREMIUM_INCOME) == 38_000


async def test_premium_paid_after_its_reservation_expired_is_booked(pg_fed: InProcessFederation) -> None:
    """S2: the PremiumPaid arrives after the expiry deleted the reservation (Kafka was down for 5 minutes): the
    payer's wallet was debited, so the income is booked and the slot is PAID, not dropped."""
    giver, mother = await family(pg_fed)
    ctx = pg_fed.node(DESTINATION)
    request = reservation_for(pg_fed, giver, mother, 38_000)
    await committed(ctx.db, lambda uow: premiums.reserve(ctx, uow, request))
    pg_fed.clock.advance(ctx.settings.premium_reservation_ttl_s + 1)
    expired = await committed(ctx.db, lambda uow: premiums.expire_reservations(
        ctx, uow, ctx.settings.premium_reservation_ttl_s))
    assert expired == 1
    await committed(ctx.db, lambda uow: premiums.on_premium_paid(ctx, uow, premium_paid(pg_fed, request, mother)))
    assert await premium_state(ctx, request.payment_id) == "PAID"
    assert await balance_fen(pg_fed, DESTINATION, ledger.PREMIUM_INCOME) == 38_000


async def test_premium_from_quota_retried_spends_the_quota_once(pg_fed: InProcessFederation,
                                                                replicas: Replicas) -> None:
    """S1: the giver's first answer was lost and the premium-from-quota call comes again with the same
    payment_id (here on the other replica): the same answer, and the quota is spent once."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await set_quota_at(pg_fed.node(SOURCE), giver, pg_fed.clock.now(), binding_id, 80_000)
    await pg_fed.pump()
    base = reservation_for(pg_fed, giver, mother, 30_000)
    request = PremiumQuotaRequest(**base.model_dump(), binding_id=binding_id)
    node_a = pg_fed.node(DESTINATION)
    node_b = await replicas.node(DESTINATION)
    first = await committed(node_a.db, lambda uow: premiums.pay_from_quota(node_a, uow, request))
    again = await committed(node_b.db, lambda uow: premiums.pay_from_quota(node_b, uow, request))
    assert again == first
    year = quota_rules.quota_year(pg_fed.clock.now())
    used_fen = await scalar(node_a.db, sa.select(quotas.MIRRORS.c.used_fen).where(
        quotas.MIRRORS.c.binding_id == binding_id, quotas.MIRRORS.c.year == year))
    assert used_fen == 30_000, "the retry spent the quota again"
    assert await balance_fen(pg_fed, DESTINATION, ledger.QUOTA_DUE) == -30_000


# ------------------------------------------------------------------------------------------ B6: windows


async def test_two_window_closes_on_two_hub_replicas_net_each_obligation_once(pg_fed: InProcessFederation,
                                                                              replicas: Replicas) -> None:
    """B6: two operators close the settlement window at once on two hub replicas: no obligation is netted in two
    windows; each window's count and net positions are those of the obligations it holds.

    The pause here is the database's: a third connection holds the windows table (EXCLUSIVE: reads go on,
    inserts wait), so each close stops at its window INSERT, after reading the open obligations."""
    hub_a = pg_fed.hub
    hub_b = await replicas.hub()
    obligations_t, windows_t = hub_ops.OBLIGATIONS, hub_ops.WINDOWS
    now = pg_fed.clock.now()
    owed = [(SOURCE, DESTINATION, 30_000), (DESTINATION, SOURCE, 12_000), (SOURCE, "510000", 6_930)]
    async with UnitOfWork(hub_a.db) as uow:
        for number, (debtor, creditor, amount_fen) in enumerate(owed):
            await uow.execute(sa.insert(obligations_t).values(
                kind="TRANSFER", ref=f"T-window-{number}", debtor_admdvs=debtor, creditor_admdvs=creditor,
                amount_fen=amount_fen, created_at=now))
        await uow.commit()
    pg_fed.clock.advance(60)

    blocker_db = await replicas.database_of(hub_a)
    async with UnitOfWork(blocker_db) as blocker:
        await blocker.execute(sa.text(f'LOCK TABLE "{windows_t.name}" IN EXCLUSIVE MODE'))
        closes = [asyncio.ensure_future(committed(hub.db, functools.partial(hub_ops.close_current_window, hub)))
                  for hub in (hub_a, hub_b)]
        # Both closes wait behind the blocker's table lock before it lets go.
        await until_blocked_in_postgresql(2, *closes, statement=sa.text(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = CAST(:name AS regclass)").bindparams(
            name=f'"{pg_fed.hub.db.schema}"."{windows_t.name}"'))
        await blocker.commit()
    answers = await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), RACE_TIMEOUT_S)
    assert all(isinstance(answer, dict) and "window_id" in answer for answer in answers), answers

    async with UnitOfWork(hub_a.db) as uow:
        windows = (await uow.execute(sa.select(windows_t))).all()
        held = (await uow.execute(sa.select(obligations_t))).all()
    assert len(windows) == 2
    assert sum(window.obligations for window in windows) == len(owed), "obligations netted in two windows"
    for window in windows:
        mine = [row for row in held if row.window_id == window.window_id]
        assert window.obligations == len(mine)
        net: dict[str, int] = {}
        for row in mine:
            net[row.debtor_admdvs] = net.get(row.debtor_admdvs, 0) - row.amount_fen
            net[row.creditor_admdvs] = net.get(row.creditor_admdvs, 0) + row.amount_fen
        frozen = json.loads(window.positions_json)["net_by_province"]
        positions = {entry["admdvs"]: entry["net_fen"] for entry in frozen}
        assert {k: v for k, v in positions.items() if v} == {k: v for k, v in net.items() if v}


# ------------------------------------------------------------------------------------------ B12: daily limit


async def test_transfers_of_one_giver_on_two_replicas_keep_the_daily_limit(pg_fed: InProcessFederation,
                                                                           replicas: Replicas,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """B12: four transfers by one giver on one day with at most 3 allowed: two went through, the last two are
    sent at once on two replicas of the giver's node. At most three are accepted; the fourth is refused."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await open_wallet(pg_fed, mother)
    for _ in range(2):
        await send_transfer(pg_fed, giver, binding_id, 10_000)
    node_a = pg_fed.node(SOURCE)
    node_b = await replicas.node(SOURCE)

    def send(ctx: NodeContext) -> Coroutine[Any, Any, Any]:
        claims = giver.claims(pg_fed.clock.now())
        return committed(ctx.db, lambda uow: node_transfers.send_transfer(ctx, uow, claims, binding_id, 10_000))

    gate = Gate()
    # The pause sits between today's count and the insert.
    monkeypatch.setattr(transfer_repo, "count_sent_on",
                        gate.wrap(transfer_repo.count_sent_on, after=True))
    outcomes = await race(gate, send(node_a), send(node_b))
    accepted = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, DomainError)]
    assert len(accepted) + len(refused) == 2, outcomes
    sent_today = await scalar(node_a.db, sa.select(sa.func.count()).select_from(node_transfers.OUT).where(
        node_transfers.OUT.c.giver_psn_no == giver.psn_no))
    assert sent_today <= 3, f"{sent_today} transfers accepted in one day"
    assert sent_today == 2 + len(accepted) == 3
    await pg_fed.pump()
    await assert_money_conserved(pg_fed, GIVER_PA_FEN)


# ------------------------------------------------------------------------------------------ B10: bindings


async def test_binding_confirm_and_end_on_two_hub_replicas_agree_everywhere(pg_fed: InProcessFederation,
                                                                            replicas: Replicas,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """B10: the relative confirms a binding on one hub replica while the giver ends it on the other: every
    version is published once (never two snapshots with one version and different states), and both nodes end
    with the hub's final state."""
    giver, mother = await family(pg_fed)
    binding_id = await create_binding(pg_fed, giver, mother, "parent")
    await pg_fed.pump()
    hub_a = pg_fed.hub
    hub_b = await replicas.hub()

    gate = Gate()
    monkeypatch.setattr(hub_bindings, "_change", gate.wrap(hub_bindings._change))  # after the binding's read
    confirmed, ended = await race(
        gate,
        committed(hub_a.db, lambda uow: hub_bindings.confirm(hub_a, uow, binding_id,
                                                             BindingActionRequest(psn_no=mother.psn_no))),
        committed(hub_b.db, lambda uow: hub_bindings.end(hub_b, uow, binding_id,
                                                         BindingActionRequest(psn_no=giver.psn_no,
                                                                              reason="UNBOUND"))))
    assert not isinstance(confirmed, BaseException), confirmed
    assert not isinstance(ended, BaseException), ended
    published = of_type(await pg_fed.take_outbox(hub_a.db), BindingChanged.TYPE)
    states_by_version: dict[int, set[str]] = {}
    for wired in published:
        snapshot = accepted_as(wired, BindingChanged).binding
        states_by_version.setdefault(snapshot.version, set()).add(snapshot.state)
    assert all(len(states) == 1 for states in states_by_version.values()), (
        f"one version published with different states: {states_by_version}")

    await pg_fed.deliver(published)
    await pg_fed.pump()
    hub_state = await scalar(hub_a.db, sa.select(hub_bindings.BINDINGS.c.state).where(
        hub_bindings.BINDINGS.c.binding_id == binding_id))
    assert hub_state == "ENDED"
    for admdvs in (SOURCE, DESTINATION):
        node_state = await scalar(pg_fed.node(admdvs).db, sa.select(node_bindings.BINDINGS.c.state).where(
            node_bindings.BINDINGS.c.binding_id == binding_id))
        assert node_state == hub_state, f"node {admdvs} holds {node_state}, the hub {hub_state}"


# ------------------------------------------------------------------------------------------ B1: outbox relay


class RecordingProducer:
    """Stands in for AIOKafkaProducer: what is under test is the relay's database logic (which rows a round
    reads, publishes and deletes), not Kafka. `send` records the message and returns an acknowledged future,
    or, while `hold` is set, one that completes when `hold` is cleared (a slow broker)."""

    def __init__(self, sent: list[tuple[str, bytes]]) -> None:
        self.sent = sent
        self.held: list[asyncio.Future[None]] = []
        self.hold = False
        self.sending = asyncio.Event()

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append((topic, value))
        self.sending.set()
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.hold:
            self.held.append(acked)
        else:
            acked.set_result(None)
        return acked

    def ack_held(self) -> None:
        for acked in self.held:
            acked.set_result(None)
        self.held.clear()


def relay(db: Database, producer: RecordingProducer) -> OutboxRelay:
    return OutboxRelay(db, producer, batch_size=100, poll_interval_s=0.5)


def outbox_envelope(name: str) -> Envelope:
    return new_envelope(TransferCancel(transfer_id=name, reason="TEST"), source="test", trace_id=name)


def published_ids(sent: list[tuple[str, bytes]]) -> list[str]:
    return [Envelope.from_bytes(value).id for _, value in sent]


async def test_outbox_row_committed_after_a_higher_seq_is_still_published(pg_fed: InProcessFederation,
                                                                          replicas: Replicas) -> None:
    """B1: PostgreSQL hands out `seq` at INSERT, not at commit. Transaction A inserts (lower seq), B inserts
    (higher seq) and commits; a relay round runs; A commits; the next round publishes A's row too: nothing is
    skipped, nothing published twice."""
    node = pg_fed.node(SOURCE)
    writer_a = await replicas.database_of(node)
    writer_b = await replicas.database_of(node)
    sent: list[tuple[str, bytes]] = []
    relay_db = await replicas.database_of(node)
    the_relay = relay(relay_db, RecordingProducer(sent))
    lower, higher = outbox_envelope("T-lower"), outbox_envelope("T-higher")
    async with UnitOfWork(writer_a) as uow_a:
        await add_to_outbox(uow_a, topics.HUB_INBOUND, "T-lower", lower)
        await uow_a.write_deferred()  # inserted now (the lower seq), committed after B
        async with UnitOfWork(writer_b) as uow_b:
            await add_to_outbox(uow_b, topics.HUB_INBOUND, "T-higher", higher)
            await uow_b.commit()
        await the_relay.publish_pending()
        assert published_ids(sent) == [higher.id]
        await uow_a.commit()
    await the_relay.publish_pending()
    assert published_ids(sent) == [higher.id, lower.id], "a row committed late was skipped"


async def test_two_outbox_relays_on_two_replicas_never_publish_one_row_twice(pg_fed: InProcessFederation,
                                                                             replicas: Replicas) -> None:
    """B1: every replica runs a relay over the instance's one outbox. While one is in the middle of a round
    (Kafka has not acknowledged yet), the other's round publishes nothing; afterwards each row has been
    published once and the published rows are gone."""
    node = pg_fed.node(SOURCE)
    writer = await replicas.database_of(node)
    sent: list[tuple[str, bytes]] = []
    producer = RecordingProducer(sent)
    first_db = await replicas.database_of(node)
    first_relay = relay(first_db, producer)
    second_relay = relay(await replicas.database_of(node), producer)
    async with UnitOfWork(writer) as uow:
        for number in range(3):
            await add_to_outbox(uow, topics.HUB_INBOUND, f"T-{number}", outbox_envelope(f"T-{number}"))
        await uow.commit()
    producer.hold = True
    round_one = asyncio.ensure_future(first_relay.publish_pending())
    await asyncio.wait_for(producer.sending.wait(), RACE_TIMEOUT_S)
    producer.hold = False
    await second_relay.publish_pending()
    producer.ack_held()
    await asyncio.wait_for(round_one, RACE_TIMEOUT_S)
    await second_relay.publish_pending()
    await first_relay.publish_pending()
    ids = published_ids(sent)
    assert len(ids) == 3 and len(set(ids)) == 3, f"published by two relays at once: {ids}"
    assert await scalar(first_db, sa.select(sa.func.count()).select_from(_OUTBOX)) == 0


async def test_the_relay_lock_passes_on_when_the_leaders_connection_is_lost(pg_fed: InProcessFederation,
                                                                             replicas: Replicas) -> None:
    """B1: the relay lock is held on the leader's listening connection for as long as that connection lives. A follower
    publishes nothing meanwhile, and does not LISTEN; once the connection is gone (its backend terminated, as when
    the leader's process dies), the other replica's relay leads at its next try, and the old leader, finding its
    connection closed, becomes a follower: every row is published once, in order."""
    node = pg_fed.node(SOURCE)
    writer = await replicas.database_of(node)
    sent: list[tuple[str, bytes]] = []
    producer = RecordingProducer(sent)
    # No poll interval: each round asks for the lock again unless it holds it.
    first, second = [OutboxRelay(await replicas.database_of(node), producer, batch_size=100, poll_interval_s=0.0)
                     for _ in range(2)]
    envelopes = [outbox_envelope(f"L-{number}") for number in range(2)]

    async def commit_row(envelope: Envelope) -> None:
        async with UnitOfWork(writer) as uow:
            await add_to_outbox(uow, topics.HUB_INBOUND, envelope.id, envelope)
            await uow.commit()

    try:
        await commit_row(envelopes[0])
        assert await first.publish_pending() == 1
        await commit_row(envelopes[1])
        assert await second.publish_pending() == 0, "a follower published while the leader's lock was held"
        # Only the leader LISTENs: every NOTIFY wakes each backend that LISTENs in the database, on any channel.
        assert await first._listener_driver.fetch("SELECT pg_listening_channels()")
        assert not await second._listener_driver.fetch("SELECT pg_listening_channels()")
        leader_pid = first._listener_driver.get_server_pid()
        async with UnitOfWork(writer) as uow:
            await uow.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": leader_pid})
            await uow.commit()
        deadline = asyncio.get_running_loop().time() + RACE_TIMEOUT_S
        while not first._listener_driver.is_closed():
            assert asyncio.get_running_loop().time() < deadline, "the terminated connection never closed"
            await asyncio.sleep(0.05)
        assert await second.publish_pending() == 1, "the lock did not pass on with the leader's connection"
        assert await second._listener_driver.fetch("SELECT pg_listening_channels()"), "the new leader does not listen"
        assert await first.publish_pending() == 0, "the old leader went on publishing without the lock"
        assert published_ids(sent) == [envelope.id for envelope in envelopes]
    finally:
        for one in (first, second):
            one.stop()
            await one.run()  # stopped: closes its listening connection, and the lock with it


async def test_running_relays_on_two_replicas_publish_everything_without_a_notify_storm(
        pg_fed: InProcessFederation, replicas: Replicas, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both replicas run their relay loops and both commit outbox rows: the leader publishes every row once,
    the follower's commits reach it by NOTIFY, and once all is published the relays fall quiet. Before, the
    follower was woken by its own NOTIFY and sent another: about 1,400 a second with 2 replicas (issue 9)."""
    node = pg_fed.node(SOURCE)
    sent: list[tuple[str, bytes]] = []
    producer = RecordingProducer(sent)
    dbs = [await replicas.database_of(node) for _ in range(2)]
    notified = [0]
    original = OutboxRelay._notified

    def counting(self: OutboxRelay, *args: Any) -> None:
        notified[0] += 1
        original(self, *args)

    monkeypatch.setattr(OutboxRelay, "_notified", counting)
    relays = [relay(db, producer) for db in dbs]
    loops = [asyncio.ensure_future(one.run()) for one in relays]
    try:
        for number in range(10):
            for index, db in enumerate(dbs):
                async with UnitOfWork(db) as uow:
                    name = f"N-{index}-{number}"
                    await add_to_outbox(uow, topics.HUB_INBOUND, name, outbox_envelope(name))
                    await uow.commit()
        deadline = asyncio.get_running_loop().time() + RACE_TIMEOUT_S
        while len(sent) < 20:
            assert asyncio.get_running_loop().time() < deadline, f"published only {len(sent)} of 20"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        notified[0] = 0
        await asyncio.sleep(1.0)
        assert notified[0] <= 4, f"{notified[0]} NOTIFYs in a quiet second"
        assert sorted(published_ids(sent)) == sorted(set(published_ids(sent)))
    finally:
        for one in relays:
            one.stop()
        await asyncio.gather(*loops, return_exceptions=True)


# ------------------------------------------------------------------------------------------ Idempotency-Key


def http_request(path: str, key: str, body: dict[str, Any]) -> Request:
    raw = orjson.dumps(body)
    scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "root_path": "",
             "scheme": "http", "server": ("node.contract-test", 80), "query_string": b"",
             "headers": [(b"idempotency-key", key.encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(raw)).encode())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


async def test_one_idempotency_key_on_two_replicas_gets_one_answer(pg_fed: InProcessFederation,
                                                                   replicas: Replicas) -> None:
    """Two requests with one Idempotency-Key at once on two replicas (a client retrying early through a load
    balancer): one transfer, and both get its answer (202), never a refusal from running it a second time, never
    a 500. The transfer takes the giver's whole personal account, so running it twice would be refused.

    The pause is inside the use case the route hands to run_idempotent (the first request stops before the
    transfer runs), since what is under test is run_idempotent's own check-then-act."""
    giver, mother = await family(pg_fed)
    binding_id = await active_binding(pg_fed, giver, mother)
    await open_wallet(pg_fed, mother)
    node_a = pg_fed.node(SOURCE)
    node_b = await replicas.node(SOURCE)
    body = {"binding_id": binding_id, "amount_fen": GIVER_PA_FEN}
    gate = Gate()
    claims = giver.claims(pg_fed.clock.now())

    def request_on(ctx: NodeContext) -> Coroutine[Any, Any, Any]:
        # What citizen_api.send_transfer does, on this replica.
        async def use_case(uow: UnitOfWork) -> dict[str, Any]:
            return await node_transfers.send_transfer(ctx, uow, claims, body["binding_id"], body["amount_fen"])

        return run_idempotent(http_request("/v1/transfers", "retry-key-1", body), ctx.db, claims.psn_no,
                              gate.wrap(use_case), status=202)

    first, second = await race(gate, request_on(node_a), request_on(node_b))
    assert not isinstance(first, BaseException), first
    assert not isinstance(second, BaseException), second
    assert (first.status_code, second.status_code) == (202, 202), (first.body, second.body)
    assert first.body == second.body
    sent = await scalar(node_a.db, sa.select(sa.func.count()).select_from(node_transfers.OUT).where(
        node_transfers.OUT.c.giver_psn_no == giver.psn_no))
    assert sent == 1
    await pg_fed.pump()
    await assert_money_conserved(pg_fed, GIVER_PA_FEN)
