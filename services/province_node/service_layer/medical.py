"""Hospital and clinic visits of this node's people, asked for by the gateway while the HIS waits (API.md
"Medical institutions"; DESIGN.md: the payer's home node owns the visit's money state, the policy and the
year's accumulators).

Every state-changing message is keyed by its msgid (`medical_operations`, answer stored in the same transaction
as its effects): a repeat gets the original answer and changes nothing; 2601 undoes what its original did (2207,
2208, 2304, 2305, 2401), or, when the original has not arrived, leaves its msgid PREEMPTED so that it is refused
if it ever does. Each message first locks its person's row: one person's medical messages run one after the
other on every replica (FOR UPDATE on PostgreSQL; SQLite has one writer), so the accumulators, the visit states
and the balances a settlement reads are the ones it changes.

Visit states: outpatient REGISTERED → CANCELLED (2202; its batches are settled and cancelled one by one);
inpatient ADMITTED ⇄ DISCHARGED (2402 / 2405) → SETTLED (2304; 2305 back to DISCHARGED), ADMITTED → CANCELLED
(2404, or 2601 of the 2401). Money: the fund's share SYS:MEDICAL_FUND → SYS:CLEARING, the person's share from
the personal account and wallet → SYS:CLEARING and from quotas through their mirrors (the institution is paid
through clearing, wherever it is)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa

from services.province_node.adapters import ledger_repo, medical_repo
from services.province_node.adapters.medical_repo import OperationRow, SettlementRow
from services.province_node.adapters.medical_tables import (
    FilingRow,
    MedicalAccumulator,
    MedicalLineRow,
    MedicalPolicyRow,
    MedicalVisitRow,
)
from services.province_node.domain import ledger, medical_settlement
from services.province_node.domain.errors import DomainError, Forbidden, NotFound
from services.province_node.domain.filing_rules import covers
from services.province_node.domain.medical_policy import MedicalPolicy, default_policy
from services.province_node.domain.medical_settlement import (
    Effect,
    SettlementState,
    VisitState,
    refused,
    setting_of,
)
from services.province_node.domain.medical_split import (
    LineAmounts,
    MedicalSplit,
    bill_totals,
    is_settleable,
    split_medical,
)
from services.province_node.domain.payment_split import account_posting
from services.province_node.service_layer import quotas
from services.province_node.service_layer.context import NodeContext
from services.province_node.service_layer.funds import funds_of
from services.province_node.service_layer.persons import PERSONS, no_such_person
from shared import audit
from shared.clock import SHANGHAI
from shared.contracts.internal_api import PosBalances
from shared.contracts.medical_api import (
    REVERSIBLE_INFNOS,
    MedicalCall,
    MedicalLine,
    MedicalResult,
    MedicalSettlement,
    MedicalVisit,
)
from shared.db import ReadView, UnitOfWork, for_update
from shared.regions import province_of
from shared.tables import table

VISITS = table(MedicalVisitRow)
LINES = table(MedicalLineRow)
ACCUMULATORS = table(MedicalAccumulator)
POLICY = table(MedicalPolicyRow)
FILINGS = table(FilingRow)

# The pooled fund (统筹基金) of this province: what it pays institutions leaves here for SYS:CLEARING. A system
# account (may go negative): the fund's own books are not this ledger's business, only what it paid through it.
MEDICAL_FUND = "SYS:MEDICAL_FUND"
ALL = "0000"  # chrg_bchno / feedetl_sn meaning "every (unsettled) one"

class Conflict(DomainError):
    status = 409


View = UnitOfWork | ReadView


def _locking(view: View, statement: Any) -> Any:
    """FOR UPDATE inside a unit of work that will change the row; a plain read in a read-only view (2206/2303)."""
    return for_update(statement) if isinstance(view, UnitOfWork) else statement


# ------------------------------------------------------------------------------------------------ reading


_PARSED_POLICIES: dict[str, MedicalPolicy] = {}  # body text -> parsed: read per settlement, parsed once


async def current_policy(ctx: NodeContext, view: UnitOfWork | ReadView) -> MedicalPolicy:
    """The policy stored by the last PUT (read each time: another replica may have stored it), else the
    province's default."""
    row = (await view.execute(sa.select(POLICY.c.body).where(POLICY.c.policy_id == "current"))).first()
    if row is None:
        return default_policy(ctx.admdvs)
    policy = _PARSED_POLICIES.get(row.body)
    if policy is None:
        if len(_PARSED_POLICIES) > 100:
            _PARSED_POLICIES.clear()
        policy = _PARSED_POLICIES[row.body] = MedicalPolicy.from_json(orjson.loads(row.body))
    return policy


async def _locked_person(uow: UnitOfWork, psn_no: str) -> Any:
    row = (await uow.execute(for_update(sa.select(PERSONS).where(PERSONS.c.psn_no == psn_no)))).first()
    if row is None:
        raise no_such_person()
    return row


def _new_id(ctx: NodeContext) -> str:
    """30 characters: the province (which routes every later message here), then 24 random hex digits."""
    return ctx.admdvs + uuid.uuid4().hex[:24].upper()


def _visit_view(row: Any) -> MedicalVisit:
    return MedicalVisit(mdtrt_id=row.mdtrt_id, psn_no=row.psn_no, setting=row.setting, state=row.state,
                        fixmedins_code=row.fixmedins_code, insutype=row.insutype, med_type=row.med_type,
                        ipt_otp_no=row.ipt_otp_no)


def _settlement_view(row: SettlementRow) -> MedicalSettlement:
    """A `medical_settlements` row as the wire's MedicalSettlement, field by field (a renamed column or contract
    field is an error here, not a silent mismatch)."""
    return MedicalSettlement(
        setl_id=row.setl_id, msgid=row.msgid, mdtrt_id=row.mdtrt_id, chrg_bchno=row.chrg_bchno, psn_no=row.psn_no,
        fixmedins_code=row.fixmedins_code, insutype=row.insutype, setting=row.setting, state=row.state,
        version=row.version, medfee_fen=row.medfee_fen, fulamt_fen=row.fulamt_fen, overlmt_fen=row.overlmt_fen,
        preselfpay_fen=row.preselfpay_fen, inscp_fen=row.inscp_fen, act_pay_dedc_fen=row.act_pay_dedc_fen,
        hifp_pay_fen=row.hifp_pay_fen, ratio=row.ratio, acct_pay_fen=row.acct_pay_fen,
        wallet_pay_fen=row.wallet_pay_fen, quota_pay_fen=row.quota_pay_fen, cash_pay_fen=row.cash_pay_fen,
        settled_at=row.settled_at)


def _line_view(row: Any) -> MedicalLine:
    """A `medical_lines` row as the wire's MedicalLine, field by field."""
    return MedicalLine(
        feedetl_sn=row.feedetl_sn, init_feedetl_sn=row.init_feedetl_sn, chrg_bchno=row.chrg_bchno,
        med_list_codg=row.med_list_codg, amount_fen=row.amount_fen, cnt=row.cnt, price_fen=row.price_fen,
        fulamt_fen=row.fulamt_fen, overlmt_fen=row.overlmt_fen, preselfpay_fen=row.preselfpay_fen,
        inscp_fen=row.inscp_fen, daily_goods=row.daily_goods, chrgitm_lv=row.chrgitm_lv,
        selfpay_prop=row.selfpay_prop)


async def _visit(uow: View, call: MedicalCall) -> Any:
    """The message's visit, locked: of this person, this institution, and the infno's setting."""
    if not call.mdtrt_id:
        raise refused("mdtrt_id is required")
    row = (await uow.execute(_locking(uow, sa.select(VISITS).where(VISITS.c.mdtrt_id == call.mdtrt_id)))).first()
    if row is None:
        raise NotFound("VISIT_NOT_FOUND", f"unknown mdtrt_id {call.mdtrt_id}")
    if row.psn_no != call.psn_no:
        raise Forbidden("NOT_YOUR_VISIT", f"visit {call.mdtrt_id} is of another person")
    if row.fixmedins_code != call.fixmedins_code:
        raise Forbidden("NOT_YOUR_VISIT", f"visit {call.mdtrt_id} is at another institution")
    if row.setting != setting_of(call.infno):
        raise refused(f"visit {call.mdtrt_id} is an {row.setting} visit; {call.infno} is for "
                      f"{setting_of(call.infno)} visits")
    return row


async def _set_visit(ctx: NodeContext, uow: UnitOfWork, visit: Any, **values: Any) -> Any:
    await uow.execute(sa.update(VISITS).where(VISITS.c.mdtrt_id == visit.mdtrt_id, VISITS.c.version == visit.version)
                      .values(version=visit.version + 1, updated_at=ctx.clock.now(), **values))
    return (await uow.execute(sa.select(VISITS).where(VISITS.c.mdtrt_id == visit.mdtrt_id))).one()


async def _lines(uow: UnitOfWork | ReadView, mdtrt_id: str) -> list[Any]:
    return list(await uow.execute(sa.select(LINES).where(LINES.c.mdtrt_id == mdtrt_id)
                                  .order_by(LINES.c.created_at, LINES.c.feedetl_sn)))


def _amounts(row: Any) -> LineAmounts:
    return LineAmounts(row.amount_fen, row.fulamt_fen, row.overlmt_fen, row.preselfpay_fen, row.inscp_fen,
                       row.daily_goods)


async def _result(ctx: NodeContext, uow: UnitOfWork, psn_no: str, *, effect: Effect = Effect.NONE,
                  visit: Any = None, settlement: SettlementRow | None = None, lines: list[MedicalLine] | None = None,
                  undone: bool = False, balances: PosBalances | None = None,
                  with_balances: bool = True) -> MedicalResult:
    """The answer. Balances are read again unless given (or not wanted: a message that moves no money)."""
    if balances is None and with_balances:
        _, balances = await funds_of(ctx, uow, psn_no)
    return MedicalResult(effect=effect.value, visit=None if visit is None else _visit_view(visit),
                         settlement=None if settlement is None else _settlement_view(settlement),
                         lines=lines or [], undone=undone, balances_after=balances)


# ------------------------------------------------------------------------------------------------ visits


async def register(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2201 register an outpatient visit, 2401 admit: the visit and its mdtrt_id are made here."""
    setting = setting_of(call.infno)
    if not person.insured:
        raise refused("this person's insurance has ended", "INSURANCE_ENDED")
    if call.insutype != person.insutype:
        raise refused(f"the person is insured under insutype {person.insutype}, not {call.insutype}",
                      "INSUTYPE_MISMATCH")
    if call.begntime is None:
        raise refused("begntime is required")
    if setting == "inpatient":
        open_admission = (await uow.execute(sa.select(VISITS.c.mdtrt_id, VISITS.c.fixmedins_code).where(
            VISITS.c.psn_no == call.psn_no, VISITS.c.setting == "inpatient",
            VISITS.c.state.in_([state.value for state in medical_settlement.OPEN_ADMISSION])))).first()
        if open_admission is not None:
            raise refused(f"the person is admitted already (mdtrt_id {open_admission.mdtrt_id} at "
                          f"{open_admission.fixmedins_code}) and not discharged and settled there",
                          "ALREADY_ADMITTED")
    now = ctx.clock.now()
    mdtrt_id = _new_id(ctx)
    await uow.execute(sa.insert(VISITS).values(
        mdtrt_id=mdtrt_id, msgid=call.msgid, psn_no=call.psn_no, setting=setting,
        state=medical_settlement.registered(setting).value, fixmedins_code=call.fixmedins_code,
        institution_admdvs=call.institution_admdvs, hosp_lv=call.hosp_lv, insutype=call.insutype,
        med_type=call.med_type or ("11" if setting == "outpatient" else "21"), ipt_otp_no=call.ipt_otp_no or "",
        visit_day=call.begntime.astimezone(SHANGHAI).date(), deductible_used_fen=0, version=1, created_at=now,
        updated_at=now))
    visit = (await uow.execute(sa.select(VISITS).where(VISITS.c.mdtrt_id == mdtrt_id))).one()
    return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)


async def _settled_of_visit(uow: UnitOfWork, mdtrt_id: str) -> list[SettlementRow]:
    return await medical_repo.in_effect_of_visit(uow, mdtrt_id)


async def cancel_registration(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2202 (outpatient) and 2404 (inpatient): only while nothing is settled (and, inpatient, not discharged)."""
    visit = await _visit(uow, call)
    if visit.state == medical_settlement.registered(visit.setting):
        settled = bool(await _settled_of_visit(uow, visit.mdtrt_id))
    else:
        settled = False  # refused for its state first
    state = medical_settlement.after_cancel_registration(visit.setting, visit.state, visit.mdtrt_id, settled=settled)
    visit = await _set_visit(ctx, uow, visit, state=state.value)
    return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)


async def visit_info(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2203: the visit's med_type (and diagnoses, which the HIS keeps) before the fee lines."""
    visit = await _visit(uow, call)
    medical_settlement.check_visit_info(visit.state, visit.mdtrt_id)
    visit = await _set_visit(ctx, uow, visit, med_type=call.med_type or visit.med_type)
    return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)


async def discharge(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    visit = await _visit(uow, call)
    state = medical_settlement.after_discharge(visit.state, visit.mdtrt_id)
    visit = await _set_visit(ctx, uow, visit, state=state.value)
    return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)


async def cancel_discharge(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    visit = await _visit(uow, call)
    state = medical_settlement.after_cancel_discharge(visit.state, visit.mdtrt_id)
    visit = await _set_visit(ctx, uow, visit, state=state.value)
    return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)


# ------------------------------------------------------------------------------------------------ fee lines


async def upload_lines(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2204 (outpatient, by batch) and 2301 (inpatient, refund lines allowed)."""
    visit = await _visit(uow, call)
    medical_settlement.check_lines_open(visit.setting, visit.state, visit.mdtrt_id)
    if not call.lines:
        raise refused("no fee lines")
    existing = {row.feedetl_sn: row for row in await _lines(uow, visit.mdtrt_id)}
    settled_batches = {row.chrg_bchno for row in existing.values() if row.setl_id is not None}
    refunded_fen: dict[str, int] = {}
    for row in existing.values():
        if row.init_feedetl_sn:
            refunded_fen[row.init_feedetl_sn] = refunded_fen.get(row.init_feedetl_sn, 0) - row.amount_fen
    for line in call.lines:
        if line.feedetl_sn in existing or line.feedetl_sn == ALL:
            raise refused(f"feedetl_sn {line.feedetl_sn} was already uploaded for this visit")
        if visit.setting == "outpatient" and line.chrg_bchno in settled_batches:
            raise refused(f"batch chrg_bchno {line.chrg_bchno} is settled: no more lines in it")
        if line.amount_fen < 0:
            original = existing.get(line.init_feedetl_sn)
            if original is None or original.amount_fen <= 0:
                raise refused(f"{line.feedetl_sn}: init_feedetl_sn {line.init_feedetl_sn} is not a billed line "
                              "of this visit")
            already = refunded_fen.get(line.init_feedetl_sn, 0)
            if already - line.amount_fen > original.amount_fen:
                raise refused(f"{line.feedetl_sn} refunds more than line {line.init_feedetl_sn} billed "
                              f"({original.amount_fen / 100:.2f} yuan, {already / 100:.2f} refunded already)")
            refunded_fen[line.init_feedetl_sn] = already - line.amount_fen
    now = ctx.clock.now()
    await uow.execute(sa.insert(LINES), [{**line.model_dump(), "mdtrt_id": visit.mdtrt_id, "setl_id": None,
                                          "created_at": now} for line in call.lines])
    return await _result(ctx, uow, call.psn_no, visit=visit, lines=list(call.lines), with_balances=False)


async def drop_lines(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2205 (outpatient: a batch, or "0000" every unsettled line) and 2302 (inpatient: listed lines or "0000")."""
    visit = await _visit(uow, call)
    lines = await _lines(uow, visit.mdtrt_id)
    medical_settlement.check_lines_droppable(visit.setting, visit.state, visit.mdtrt_id)
    if visit.setting == "outpatient":
        batch = call.chrg_bchno or ""
        if not batch:
            raise refused("chrg_bchno is required (\"0000\" drops every unsettled line)")
        if batch != ALL and any(row.chrg_bchno == batch and row.setl_id is not None for row in lines):
            raise refused(f"batch chrg_bchno {batch} is settled; cancel the settlement first (2208)")
        dropping = [row for row in lines if row.setl_id is None and (batch == ALL or row.chrg_bchno == batch)]
        if not dropping and batch != ALL:
            raise refused(f"no unsettled lines in batch chrg_bchno {batch}")
    else:
        if not call.feedetl_sns:
            raise refused("name the lines to drop (feedetl_sn, \"0000\" for all)")
        if ALL in call.feedetl_sns:
            dropping = lines
        else:
            by_sn = {row.feedetl_sn: row for row in lines}
            unknown = [sn for sn in call.feedetl_sns if sn not in by_sn]
            if unknown:
                raise refused(f"no line {unknown[0]} on visit {visit.mdtrt_id}")
            dropping = [by_sn[sn] for sn in call.feedetl_sns]
            names = {row.feedetl_sn for row in dropping}
            for row in lines:
                if row.init_feedetl_sn in names and row.feedetl_sn not in names:
                    raise refused(f"line {row.init_feedetl_sn} is refunded by {row.feedetl_sn}; drop that too")
    if dropping:
        await uow.execute(sa.delete(LINES).where(LINES.c.mdtrt_id == visit.mdtrt_id,
                                                 LINES.c.feedetl_sn.in_([row.feedetl_sn for row in dropping])))
    return await _result(ctx, uow, call.psn_no, visit=visit, lines=[_line_view(row) for row in dropping],
                         with_balances=False)


# ------------------------------------------------------------------------------------------------ settling


async def _accumulator(uow: View, psn_no: str, year: int, setting: str) -> Any:
    return (await uow.execute(_locking(uow, sa.select(ACCUMULATORS).where(
        ACCUMULATORS.c.psn_no == psn_no, ACCUMULATORS.c.year == year, ACCUMULATORS.c.setting == setting)))).first()


async def _accumulate(ctx: NodeContext, uow: UnitOfWork, psn_no: str, year: int, setting: str,
                      deductible_fen: int, fund_fen: int) -> None:
    """Add (or, negative, give back) the year's deductible used (outpatient) and fund paid."""
    row = await _accumulator(uow, psn_no, year, setting)
    now = ctx.clock.now()
    if row is None:
        assert deductible_fen >= 0 and fund_fen >= 0, "giving back what was never accumulated"
        await uow.execute(sa.insert(ACCUMULATORS).values(psn_no=psn_no, year=year, setting=setting,
                                                         deductible_used_fen=deductible_fen, fund_paid_fen=fund_fen,
                                                         updated_at=now))
        return
    await uow.execute(sa.update(ACCUMULATORS).where(
        ACCUMULATORS.c.psn_no == psn_no, ACCUMULATORS.c.year == year, ACCUMULATORS.c.setting == setting).values(
        deductible_used_fen=max(0, row.deductible_used_fen + deductible_fen),
        fund_paid_fen=max(0, row.fund_paid_fen + fund_fen), updated_at=now))


async def _filed(uow: UnitOfWork | ReadView, psn_no: str, institution_admdvs: str, visit_day: Any) -> bool:
    rows = await uow.execute(sa.select(FILINGS).where(FILINGS.c.psn_no == psn_no, FILINGS.c.state == "ACTIVE",
                                                      FILINGS.c.begndate <= visit_day))
    return any((row.enddate is None or row.enddate >= visit_day) and covers(row.mdtrtarea_admdvs, institution_admdvs)
               for row in rows)


async def _bill_lines(uow: View, visit: Any, call: MedicalCall) -> list[Any]:
    lines = await _lines(uow, visit.mdtrt_id)
    if visit.setting == "outpatient":
        batch = call.chrg_bchno or ""
        if not batch or batch == ALL:
            raise refused("chrg_bchno names the batch to settle")
        in_batch = [row for row in lines if row.chrg_bchno == batch]
        if any(row.setl_id is not None for row in in_batch):
            raise refused(f"batch chrg_bchno {batch} is settled already")
        if not in_batch:
            raise refused(f"no fee lines in batch chrg_bchno {batch} (2204 first)")
        return in_batch
    if not lines:
        raise refused(f"visit {visit.mdtrt_id} has no fee lines (2301 first)")
    return lines


async def _split(ctx: NodeContext, uow: View, call: MedicalCall, visit: Any,
                 lines: list[Any]) -> tuple[MedicalSplit, PosBalances, int]:
    totals = bill_totals(_amounts(row) for row in lines)
    if call.medfee_fen != totals.medfee_fen:
        raise refused(f"medfee_sumamt {(call.medfee_fen or 0) / 100:.2f} is not the sum of the fee lines "
                      f"{totals.medfee_fen / 100:.2f}")
    if not is_settleable(totals):
        raise refused("the fee lines, refunds included, leave nothing to settle")
    if call.insutype and call.insutype != visit.insutype:
        raise refused(f"insutype {call.insutype} is not the visit's {visit.insutype}", "INSUTYPE_MISMATCH")
    policy = await current_policy(ctx, uow)
    rule = policy.rule_for(visit.insutype, visit.setting, visit.hosp_lv)
    if rule is None:
        raise refused(f"the province's policy has no rule for insutype {visit.insutype}, {visit.setting}, "
                      f"hosp_lv {visit.hosp_lv}", "NO_POLICY_RULE")
    year = ctx.clock.now().astimezone(SHANGHAI).year
    accumulated = await _accumulator(uow, visit.psn_no, year, visit.setting)
    deductible_used_fen = visit.deductible_used_fen if visit.setting == "inpatient" else (
        0 if accumulated is None else accumulated.deductible_used_fen)
    cross_province = province_of(visit.institution_admdvs) != province_of(ctx.admdvs)
    cut = policy.unfiled_ratio_cut if cross_province and not await _filed(
        uow, visit.psn_no, visit.institution_admdvs, visit.visit_day) else Decimal(0)
    funds, balances = await funds_of(ctx, uow, visit.psn_no)
    split = split_medical(totals, rule, deductible_used_fen=deductible_used_fen,
                          cap_used_fen=0 if accumulated is None else accumulated.fund_paid_fen, ratio_cut=cut,
                          funds=funds, use_accounts=call.use_accounts)
    return split, balances, year


def _settlement_values(split: MedicalSplit, **identity: Any) -> dict[str, Any]:
    totals, person = split.totals, split.person
    return {**identity, "medfee_fen": totals.medfee_fen, "fulamt_fen": totals.fulamt_fen,
            "overlmt_fen": totals.overlmt_fen, "preselfpay_fen": totals.preselfpay_fen, "inscp_fen": totals.inscp_fen,
            "act_pay_dedc_fen": split.fund.act_pay_dedc_fen, "hifp_pay_fen": split.fund_pay_fen,
            "ratio": str(split.fund.ratio), "acct_pay_fen": person.acct_pay_fen,
            "wallet_pay_fen": person.wallet_pay_fen, "quota_pay_fen": person.quota_pay_fen,
            "quota_parts": orjson.dumps(person.quota_parts).decode(), "cash_pay_fen": person.cash_pay_fen}


async def _settleable_visit(uow: View, call: MedicalCall) -> Any:
    visit = await _visit(uow, call)
    medical_settlement.check_settleable(visit.setting, visit.state, visit.mdtrt_id)
    return visit


async def preview(ctx: NodeContext, uow: ReadView, call: MedicalCall) -> MedicalResult:
    """2206 / 2303: the split a settle would make now, from the same rows and rules; nothing is written."""
    if call.infno not in ("2206", "2303"):
        raise refused(f"infno {call.infno} is not a pre-settle")
    visit = await _settleable_visit(uow, call)
    split, balances, _ = await _split(ctx, uow, call, visit, await _bill_lines(uow, visit, call))
    now = ctx.clock.now()
    values = _settlement_values(split, setl_id="", msgid=call.msgid, mdtrt_id=visit.mdtrt_id,
                                chrg_bchno=call.chrg_bchno or "", psn_no=visit.psn_no,
                                fixmedins_code=visit.fixmedins_code, insutype=visit.insutype, setting=visit.setting,
                                state=SettlementState.SETTLED.value, version=0, settled_at=now)
    after = PosBalances(
        personal_account_fen=None if balances.personal_account_fen is None
        else balances.personal_account_fen - split.person.acct_pay_fen,
        wallet_fen=None if balances.wallet_fen is None else balances.wallet_fen - split.person.wallet_pay_fen,
        quota_fen=balances.quota_fen - split.person.quota_pay_fen)
    return MedicalResult(visit=_visit_view(visit), settlement=MedicalSettlement.model_validate(values),
                         balances_after=after)


async def _journal(uow: UnitOfWork, row: SettlementRow, at: datetime) -> None:
    """Every state of a medical settlement goes into the node's audit journal, in the same transaction."""
    await audit.append(uow, "medical_settlement.state", row.setl_id, {
        "state": row.state, "version": row.version, "psn_no": row.psn_no, "mdtrt_id": row.mdtrt_id,
        "medfee_fen": row.medfee_fen, "hifp_pay_fen": row.hifp_pay_fen, "acct_pay_fen": row.acct_pay_fen,
        "wallet_pay_fen": row.wallet_pay_fen, "quota_pay_fen": row.quota_pay_fen,
        "cash_pay_fen": row.cash_pay_fen}, at)


_FUND_ACCOUNT_SEEN: set[str] = set()  # databases (by URL and instance) where SYS:MEDICAL_FUND exists


async def _ensure_fund_account(ctx: NodeContext, uow: UnitOfWork) -> None:
    key = f"{ctx.settings.database_url}|{ctx.settings.db_instance}"
    if key in _FUND_ACCOUNT_SEEN:
        return
    found = (await uow.execute(sa.select(ledger_repo.ACCOUNTS.c.account_id).where(
        ledger_repo.ACCOUNTS.c.account_id == MEDICAL_FUND))).first()
    if found is None:
        # Two replicas creating it at once: one insert loses the key and its transaction is run again.
        await uow.execute(sa.insert(ledger_repo.ACCOUNTS).values(account_id=MEDICAL_FUND, kind="SYSTEM",
                                                                 balance_fen=0, opened_at=ctx.clock.now()))
        return  # seen only once committed: the next unit of work looks again
    _FUND_ACCOUNT_SEEN.add(key)


async def _move(ctx: NodeContext, uow: UnitOfWork, row: SettlementRow, kind: str, *, refund: bool) -> None:
    """Charge (or give back) exactly the parts this settlement was paid from, the fund's included."""
    now = ctx.clock.now()
    posting = account_posting(kind, row.setl_id, row.psn_no, row.acct_pay_fen, row.wallet_pay_fen, refund=refund)
    if row.hifp_pay_fen:
        # The fund's part in the same journal entry: fund -> CLEARING (or back), beside the accounts' legs.
        await _ensure_fund_account(ctx, uow)
        sign = 1 if refund else -1
        fund_legs = ((MEDICAL_FUND, sign * row.hifp_pay_fen), (ledger.CLEARING, -sign * row.hifp_pay_fen))
        legs = fund_legs if posting is None else (*posting.legs, *fund_legs)
        merged: dict[str, int] = {}
        for account_id, amount_fen in legs:
            merged[account_id] = merged.get(account_id, 0) + amount_fen
        posting = ledger.Posting(kind, row.setl_id, tuple((a, f) for a, f in merged.items() if f != 0))
    if posting is not None:
        await ledger_repo.post(uow, posting, now)
    for binding_id, amount_fen in orjson.loads(row.quota_parts):
        if refund:
            await quotas.return_quota_spend(ctx, uow, str(binding_id), int(amount_fen), row.setl_id, use=row.setting)
        else:
            await quotas.spend_quota(ctx, uow, str(binding_id), int(amount_fen), row.setl_id, use=row.setting)


async def _apply_accumulators(ctx: NodeContext, uow: UnitOfWork, row: SettlementRow, *, sign: int) -> None:
    """What a settlement took from the deductible and the cap, taken (sign 1) or given back (sign -1)."""
    deductible_fen = sign * row.act_pay_dedc_fen
    await _accumulate(ctx, uow, row.psn_no, row.year, row.setting,
                      deductible_fen if row.setting == "outpatient" else 0, sign * row.hifp_pay_fen)
    if row.setting == "inpatient":
        # Per admission: on the visit, whose row the message holds locked.
        used_fen = (await uow.execute(sa.select(VISITS.c.deductible_used_fen).where(
            VISITS.c.mdtrt_id == row.mdtrt_id))).scalar_one()
        await uow.execute(sa.update(VISITS).where(VISITS.c.mdtrt_id == row.mdtrt_id).values(
            deductible_used_fen=max(0, used_fen + deductible_fen)))


async def settle(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2207 (one outpatient batch) and 2304 (the whole inpatient visit, after 2402)."""
    visit = await _settleable_visit(uow, call)
    lines = await _bill_lines(uow, visit, call)
    await ledger_repo.lock_accounts(uow, [ledger.personal_account(visit.psn_no), ledger.wallet_account(visit.psn_no)])
    split, balances, year = await _split(ctx, uow, call, visit, lines)
    now = ctx.clock.now()
    setl_id = _new_id(ctx)
    transition = medical_settlement.settled()
    values = _settlement_values(split, setl_id=setl_id, msgid=call.msgid, mdtrt_id=visit.mdtrt_id,
                                chrg_bchno=call.chrg_bchno or "", psn_no=visit.psn_no,
                                fixmedins_code=visit.fixmedins_code, insutype=visit.insutype, setting=visit.setting,
                                state=transition.state.value, version=1, year=year, settled_at=now, updated_at=now)
    row = await medical_repo.add_settlement(uow, values)
    await _journal(uow, row, now)
    await uow.execute(sa.update(LINES).where(LINES.c.mdtrt_id == visit.mdtrt_id,
                                             LINES.c.feedetl_sn.in_([line.feedetl_sn for line in lines]))
                      .values(setl_id=setl_id))
    await _move(ctx, uow, row, "MEDICAL_SETTLE", refund=False)
    await _apply_accumulators(ctx, uow, row, sign=1)
    visit_state = medical_settlement.visit_after_settle(visit.setting)
    if visit_state is not None:
        visit = await _set_visit(ctx, uow, visit, state=visit_state.value)
    # The balances read for the split, less what it took: the same rows, under the same locks.
    after = PosBalances(
        personal_account_fen=None if balances.personal_account_fen is None
        else balances.personal_account_fen - split.person.acct_pay_fen,
        wallet_fen=None if balances.wallet_fen is None else balances.wallet_fen - split.person.wallet_pay_fen,
        quota_fen=balances.quota_fen - split.person.quota_pay_fen)
    return await _result(ctx, uow, call.psn_no, effect=transition.effect, visit=visit, settlement=row,
                         balances=after)


async def _own_settlement(uow: UnitOfWork, setl_id: str, psn_no: str, fixmedins_code: str,
                          mdtrt_id: str | None) -> SettlementRow:
    row = await medical_repo.settlement_locked(uow, setl_id)
    if row is None:
        raise NotFound("SETTLEMENT_NOT_FOUND", f"no settlement {setl_id} in this province")
    if row.psn_no != psn_no or row.fixmedins_code != fixmedins_code:
        raise Forbidden("NOT_YOUR_SETTLEMENT", f"settlement {setl_id} belongs to another person or institution")
    if mdtrt_id is not None and row.mdtrt_id != mdtrt_id:
        raise Forbidden("NOT_YOUR_SETTLEMENT", f"settlement {setl_id} is not of visit {mdtrt_id}")
    return row


async def _change_state(ctx: NodeContext, uow: UnitOfWork, row: SettlementRow,
                        state: SettlementState) -> SettlementRow:
    """The settlement's new state over the one read under lock, journaled."""
    changed_row = await medical_repo.change_state(uow, row, state, ctx.clock.now())
    await _journal(uow, changed_row, ctx.clock.now())
    return changed_row


async def _give_back(ctx: NodeContext, uow: UnitOfWork, row: SettlementRow, kind: str,
                     transition: medical_settlement.Transition) -> SettlementRow:
    """Everything back: money where it came from, deductible and cap, the lines unsettled, the visit unsettled."""
    assert row.state == SettlementState.SETTLED and transition.effect == Effect.REFUND, row
    await _move(ctx, uow, row, kind, refund=True)
    await _apply_accumulators(ctx, uow, row, sign=-1)
    await uow.execute(sa.update(LINES).where(LINES.c.setl_id == row.setl_id).values(setl_id=None))
    visit_change = medical_settlement.visit_after_give_back(row.setting)
    if visit_change is not None:
        settled, discharged = visit_change
        await uow.execute(sa.update(VISITS).where(VISITS.c.mdtrt_id == row.mdtrt_id, VISITS.c.state == settled.value)
                          .values(state=discharged.value, updated_at=ctx.clock.now(), version=VISITS.c.version + 1))
    return await _change_state(ctx, uow, row, transition.state)


async def cancel(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2208 / 2305: every part back; a second cancel is refused."""
    if not call.setl_id:
        raise refused("setl_id is required")
    visit = await _visit(uow, call)
    row = await _own_settlement(uow, call.setl_id, call.psn_no, call.fixmedins_code, visit.mdtrt_id)
    transition = medical_settlement.after_cancel(row.state, row.setl_id)
    row = await _give_back(ctx, uow, row, "MEDICAL_CANCEL", transition)
    visit = (await uow.execute(sa.select(VISITS).where(VISITS.c.mdtrt_id == visit.mdtrt_id))).one()
    return await _result(ctx, uow, call.psn_no, effect=transition.effect, visit=visit, settlement=row)


# ------------------------------------------------------------------------------------------------ 2601


async def _undo(ctx: NodeContext, uow: UnitOfWork, original: OperationRow, call: MedicalCall) -> MedicalResult:
    infno = original.infno
    if infno == "2401":
        visit = (await uow.execute(for_update(sa.select(VISITS).where(VISITS.c.mdtrt_id == original.mdtrt_id)))).one()
        settled = visit.state != VisitState.SETTLED and bool(await _settled_of_visit(uow, visit.mdtrt_id))
        state = medical_settlement.admission_after_reversal(visit.state, visit.mdtrt_id, settled=settled)
        if state is None:
            return await _result(ctx, uow, call.psn_no, visit=visit, with_balances=False)
        visit = await _set_visit(ctx, uow, visit, state=state.value)
        return await _result(ctx, uow, call.psn_no, visit=visit, undone=True)
    assert original.setl_id is not None, f"a {infno} names its settlement"
    row = await _own_settlement(uow, original.setl_id, call.psn_no, call.fixmedins_code, None)
    transition = medical_settlement.after_reversal(infno, row.state)
    if infno in medical_settlement.SETTLES:
        if transition.effect == Effect.REFUND:
            row = await _give_back(ctx, uow, row, "MEDICAL_REVERSAL", transition)
            return await _result(ctx, uow, call.psn_no, effect=transition.effect, settlement=row, undone=True)
        if transition.changes(row.state):
            # The cancel gave everything back already; the settlement is now void for good.
            row = await _change_state(ctx, uow, row, transition.state)
        return await _result(ctx, uow, call.psn_no, settlement=row)
    # 2208 / 2305: undoing a cancel charges the same parts again, if the lines and the visit still allow it
    # (and the accounts still hold the money: else the ledger's guard refuses and nothing changes).
    if transition.effect != Effect.CHARGE:
        return await _result(ctx, uow, call.psn_no, settlement=row)
    visit = (await uow.execute(for_update(sa.select(VISITS).where(VISITS.c.mdtrt_id == row.mdtrt_id)))).one()
    medical_settlement.check_cancel_reversible(row.setting, visit.state, visit.mdtrt_id)
    await _move(ctx, uow, row, "MEDICAL_REVERSAL", refund=False)
    await _apply_accumulators(ctx, uow, row, sign=1)
    visit_state = medical_settlement.visit_after_settle(row.setting)
    if visit_state is not None:
        await _set_visit(ctx, uow, visit, state=visit_state.value)
    row = await _change_state(ctx, uow, row, transition.state)
    # The lines it covered are its own again (those the HIS dropped since are simply not re-marked).
    await uow.execute(sa.update(LINES).where(LINES.c.mdtrt_id == row.mdtrt_id, LINES.c.setl_id.is_(None),
                                             *([LINES.c.chrg_bchno == row.chrg_bchno] if row.chrg_bchno else []))
                      .values(setl_id=row.setl_id))
    return await _result(ctx, uow, call.psn_no, effect=transition.effect, settlement=row, undone=True)


async def reverse(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall, person: Any) -> MedicalResult:
    """2601: undo what `omsgid` did while it is in force; if it never arrived, make sure it never takes effect."""
    if not call.omsgid or call.oinfno not in REVERSIBLE_INFNOS:
        raise refused(f"2601 reverses {', '.join(REVERSIBLE_INFNOS)} (oinfno) by their msgid (omsgid)")
    original = await medical_repo.operation_locked(uow, call.omsgid)
    if original is None:
        await medical_repo.preempt(uow, call.omsgid, call.msgid, ctx.clock.now())
        return await _result(ctx, uow, call.psn_no)
    if original.infno == medical_repo.PREEMPTED or original.reversed_by is not None:
        return await _result(ctx, uow, call.psn_no)
    if original.infno != call.oinfno:
        raise refused(f"message {call.omsgid} was a {original.infno}, not a {call.oinfno}", "OINFNO_MISMATCH")
    stored = MedicalResult.model_validate_json(original.response)
    if stored.visit is not None and (stored.visit.fixmedins_code, stored.visit.psn_no) != (call.fixmedins_code,
                                                                                          call.psn_no):
        raise Forbidden("NOT_YOUR_MESSAGE", f"message {call.omsgid} is of another institution or person")
    result = await _undo(ctx, uow, original, call)
    await medical_repo.mark_reversed(uow, call.omsgid, call.msgid)
    return result


# ------------------------------------------------------------------------------------------------ dispatch


Apply = Callable[[NodeContext, UnitOfWork, MedicalCall, Any], Awaitable[MedicalResult]]
APPLY: dict[str, Apply] = {
    "2201": register, "2202": cancel_registration, "2203": visit_info, "2204": upload_lines, "2205": drop_lines,
    "2207": settle, "2208": cancel,
    "2401": register, "2301": upload_lines, "2302": drop_lines, "2402": discharge, "2304": settle,
    "2305": cancel, "2405": cancel_discharge, "2404": cancel_registration,
    "2601": reverse,
}


def _request_hash(call: MedicalCall) -> str:
    content = call.model_dump(mode="json", exclude={"answer_by"})
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def apply(ctx: NodeContext, uow: UnitOfWork, call: MedicalCall) -> MedicalResult:
    """One state-changing medical message, once per msgid."""
    handler = APPLY.get(call.infno)
    if handler is None:
        raise refused(f"infno {call.infno} changes nothing at the home node")
    request_hash = _request_hash(call)
    # The person first: every medical message of one person runs after the other (see the module docstring).
    person = await _locked_person(uow, call.psn_no)
    row = await medical_repo.operation(uow, call.msgid)
    if row is not None:
        if row.infno == medical_repo.PREEMPTED:
            raise Conflict("MSGID_REVERSED", f"message {call.msgid} was reversed (2601 {row.reversed_by}) before it "
                                             "arrived; it can never take effect")
        if row.infno != call.infno or row.request_hash != request_hash:
            raise Conflict("MSGID_REUSED", f"msgid {call.msgid} was already used for another message")
        return MedicalResult.model_validate_json(row.response)
    if call.answer_by is not None and ctx.clock.now() > call.answer_by:
        raise Conflict("TOO_LATE", "the gateway stopped waiting for this message before it could be applied; "
                                   "nothing was done")
    result = await handler(ctx, uow, call, person)
    await medical_repo.add_operation(uow, OperationRow(
        msgid=call.msgid, infno=call.infno, mdtrt_id=result.visit.mdtrt_id if result.visit else call.mdtrt_id,
        setl_id=result.settlement.setl_id if result.settlement else None, effect=result.effect,
        request_hash=request_hash, response=result.model_dump_json().encode(), reversed_by=None,
        created_at=ctx.clock.now()))
    return result


# ------------------------------------------------------------------------------------------------ policy admin


async def put_policy(ctx: NodeContext, uow: UnitOfWork, policy: MedicalPolicy) -> dict[str, Any]:
    body = policy.to_json()
    now = ctx.clock.now()
    # Two operators at once: the row lock makes one wait; the last one wins, as with any PUT.
    found = (await uow.execute(for_update(sa.select(POLICY.c.policy_id).where(POLICY.c.policy_id == "current")))
             ).first()
    if found is None:
        await uow.execute(sa.insert(POLICY).values(policy_id="current", body=orjson.dumps(body).decode(),
                                                   updated_at=now))
    else:
        await uow.execute(sa.update(POLICY).where(POLICY.c.policy_id == "current").values(
            body=orjson.dumps(body).decode(), updated_at=now))
    return {"admdvs": ctx.admdvs, **body}

