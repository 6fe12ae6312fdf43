"""The hospital and clinic side of the national interface (API.md "Medical institutions"): outpatient 2201-2208,
inpatient 2401/2301/2302/2402/2303/2304/2305/2404/2405, and 2601 and 3201 for hospitals and clinics. Same
endpoint, envelope, x-tif-* authentication and message log as the pharmacy interface (exchange.py).

The gateway parses and checks each message, splits fee lines by the catalogue of the province of treatment
(domain/medical_bill.py) and routes the message to the payer's home node: 2201/2401 by the credential the HIS
read, every later message by its mdtrt_id, which the home node issued with its province in front. The node
keeps the visit's state, the policy and the accumulators, computes the fund's share and moves the money, once
per msgid (services/province_node/service_layer/medical.py). Every state-changing message is logged PENDING
before the node is asked (Exchange.begin), so that 2601 finds it whatever happened to its answer. The 2601 and
3201 flows are the pharmacies' (service_layer/pos/reversal.py, reconcile.py) with this interface's rules; the
answers' output is rendered by domain/nhsa_output.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.pharmacy_gateway.domain import nhsa_inputs, nhsa_output
from services.pharmacy_gateway.domain.medical_bill import CatalogueEntry, parse_fee_lines, split_line
from services.pharmacy_gateway.domain.nhsa_inputs import Reconciliation, Reversal, Reversible
from services.pharmacy_gateway.domain.wire import Refused, amount_fen, parse_wire_time, text
from services.pharmacy_gateway.service_layer import medical_records
from services.pharmacy_gateway.service_layer.exchange import Exchange
from services.pharmacy_gateway.service_layer.medical_admin import kind_of
from services.pharmacy_gateway.service_layer.pos.common import NODE_ERRORS, answer_by, node_refusal, reversed_note
from services.pharmacy_gateway.service_layer.pos.reconcile import reconcile_with
from services.pharmacy_gateway.service_layer.pos.reversal import ReversalFlow, reverse_with
from services.pharmacy_gateway.service_layer.routing import payer_of
from shared.contracts.medical_api import REVERSIBLE_INFNOS, MedicalCall, MedicalLine, MedicalResult
from shared.db import ReadView, UnitOfWork
from shared.regions import is_admdvs, province_of

Handler = Callable[[Exchange], Awaitable[dict[str, Any]]]
PHARMACY_INFNOS = ("2101", "2102", "2103")


async def refusal_by_kind(exchange: Exchange) -> str | None:
    """Pharmacies send 2101-2103, hospitals and clinics 22xx-24xx (API.md); None when this one may send this."""
    kind, _ = await kind_of(exchange.ctx, exchange.institution.fixmedins_code)
    infno = exchange.infno
    if kind == "pharmacy" and infno[:2] in ("22", "23", "24"):
        return f"{infno} is for hospitals and clinics; a pharmacy settles with 2101-2103"
    if kind != "pharmacy" and infno in PHARMACY_INFNOS:
        return f"{infno} is for pharmacies; a {kind} settles with 22xx (outpatient) and 23xx/24xx (inpatient)"
    return None


def is_medical_institution(kind: str) -> bool:
    return kind != "pharmacy"


# ------------------------------------------------------------------------------------------------ parsing


def _part(exchange: Exchange, name: str) -> dict[str, Any]:
    return nhsa_inputs.data_of(exchange.input, name)


async def _call(exchange: Exchange, psn_no: str, **fields: Any) -> MedicalCall:
    _, hosp_lv = await kind_of(exchange.ctx, exchange.institution.fixmedins_code)
    return MedicalCall(msgid=exchange.msgid, infno=exchange.infno, psn_no=psn_no,
                       fixmedins_code=exchange.institution.fixmedins_code,
                       institution_admdvs=exchange.institution.admdvs, hosp_lv=hosp_lv, **fields)


def _check_claimed_province(exchange: Exchange, admdvs: str) -> None:
    nhsa_inputs.check_claimed_province(exchange.envelope.get("insuplc_admdvs"), admdvs)


async def _payer_by_credential(exchange: Exchange, data: dict[str, Any], psn_no: str) -> str:
    """The payer's home province, from the credential the HIS read: it must be this psn_no's."""
    credential = nhsa_inputs.credential_of(data)
    payer = await payer_of(exchange.ctx, credential.cert_type, credential.cert_no)
    if payer.psn_no != psn_no:
        raise Refused("psn_no is not the person of the presented credential (mdtrt_cert_no)")
    _check_claimed_province(exchange, payer.admdvs)
    return payer.admdvs


def _home_of(exchange: Exchange, mdtrt_id: str, psn_no: str) -> str:
    """The home province of a visit: its mdtrt_id begins with it, as the person's psn_no does."""
    if not is_admdvs(mdtrt_id[:6]) or not is_admdvs(psn_no[:6]) or province_of(mdtrt_id[:6]) != province_of(
            psn_no[:6]):
        raise Refused(f"unknown mdtrt_id {mdtrt_id} (no visit of this psn_no)")
    admdvs = province_of(mdtrt_id[:6])
    _check_claimed_province(exchange, admdvs)
    return admdvs


def _insutype(data: dict[str, Any], *, required: bool = True) -> str:
    return nhsa_inputs.insutype_of(data, required=required)


def _visit_keys(data: dict[str, Any]) -> tuple[str, str]:
    return (text(data.get("mdtrt_id"), "mdtrt_id", max_length=40), text(data.get("psn_no"), "psn_no", max_length=32))


# ------------------------------------------------------------------------------------------------ the flow


Render = Callable[[MedicalResult], dict[str, Any]]


def _visit_output(key: str) -> Render:
    def render(result: MedicalResult) -> dict[str, Any]:
        assert result.visit is not None
        return nhsa_output.visit_output(key, result.visit)

    return render


async def _apply(exchange: Exchange, admdvs: str, call: MedicalCall, render: Render) -> dict[str, Any]:
    """Log PENDING, ask the home node (which applies it once per msgid), store the answer with what it made."""
    ctx = exchange.ctx
    instead = await exchange.begin(admdvs, call.setl_id)
    if instead is not None:
        return instead
    try:
        result = await ctx.nodes.medical_apply(admdvs, call.model_copy(update={"answer_by": answer_by(ctx)}))
    except NODE_ERRORS as exc:
        moves = call.infno in REVERSIBLE_INFNOS or call.infno == "2601"
        return await exchange.finish_with(exchange.refuse(node_refusal(admdvs, exc, moves_money=moves)))

    async def build(uow: UnitOfWork, row: Any) -> dict[str, Any]:
        if result.settlement is not None and result.settlement.setl_id:
            await medical_records.record(ctx, uow, result.settlement, institution=exchange.institution,
                                         payer_admdvs=admdvs, msgid=exchange.msgid, infno=exchange.infno)
        note = reversed_note(row)
        if note:
            return exchange.refuse(note)
        return exchange.answer(render(result))

    return await exchange.finish(build)


async def _refusing(exchange: Exchange, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a handler; a Refused (bad input, wrong kind of institution) is answered -1 and changes nothing."""
    try:
        why = await refusal_by_kind(exchange)
        if why:
            raise Refused(why)
        return await work()
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))


# ------------------------------------------------------------------------------------------------ 2201 / 2401


async def register(exchange: Exchange) -> dict[str, Any]:
    """2201 outpatient registration (input.data) and 2401 admission (input.mdtrtinfo)."""
    async def work() -> dict[str, Any]:
        outpatient = exchange.infno == "2201"
        data = _part(exchange, "data" if outpatient else "mdtrtinfo")
        psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
        insutype = _insutype(data)
        begntime = parse_wire_time(data.get("begntime"), "begntime")
        if outpatient:
            number = text(data.get("ipt_otp_no"), "ipt_otp_no", max_length=30)
            for field in ("atddr_no", "dr_name", "dept_code", "dept_name", "caty"):
                text(data.get(field), field, max_length=100)
            med_type = "11"
        else:
            number = text(data.get("ipt_no"), "ipt_no", max_length=30)
            med_type = text(data.get("med_type"), "med_type", max_length=6)
            if med_type not in ("21", "52"):
                raise Refused("med_type must be 21 (普通住院) or 52 (生育住院)")
            for field in ("atddr_no", "chfpdr_name", "adm_diag_dscr", "adm_dept_codg", "adm_dept_name", "adm_bed",
                          "dscg_maindiag_code", "dscg_maindiag_name"):
                text(data.get(field), field, max_length=200)
        admdvs = await _payer_by_credential(exchange, data, psn_no)
        call = await _call(exchange, psn_no, insutype=insutype, med_type=med_type, begntime=begntime,
                           ipt_otp_no=number)
        return await _apply(exchange, admdvs, call, _visit_output("data" if outpatient else "result"))

    return await _refusing(exchange, work)


# ------------------------------------------------------------------------------------------------ visit steps


async def visit_step(exchange: Exchange) -> dict[str, Any]:
    """2202 cancel registration, 2203 visit info, 2402 discharge, 2404 cancel admission, 2405 cancel discharge."""
    async def work() -> dict[str, Any]:
        infno = exchange.infno
        part = {"2203": "mdtrtinfo", "2402": "dscginfo"}.get(infno, "data")
        data = _part(exchange, part)
        mdtrt_id, psn_no = _visit_keys(data)
        fields: dict[str, Any] = {"mdtrt_id": mdtrt_id}
        if infno == "2202":
            text(data.get("ipt_otp_no"), "ipt_otp_no", max_length=30)
        if infno == "2203":
            med_type = text(data.get("med_type"), "med_type", max_length=6)
            if med_type not in ("11", "14"):
                raise Refused("med_type must be 11 (普通门诊) or 14 (门诊慢特病)")
            parse_wire_time(data.get("begntime"), "begntime")
            if not isinstance(exchange.input.get("diseinfo", []), list):
                raise Refused("input.diseinfo must be a list")
            fields["med_type"] = med_type
        if infno == "2402":
            _insutype(data)
            fields["endtime"] = parse_wire_time(data.get("endtime"), "endtime")
            for field in ("dscg_dept_codg", "dscg_dept_name", "dscg_way"):
                text(data.get(field), field, max_length=100)
        admdvs = _home_of(exchange, mdtrt_id, psn_no)
        return await _apply(exchange, admdvs, await _call(exchange, psn_no, **fields), _visit_output(""))

    return await _refusing(exchange, work)


# ------------------------------------------------------------------------------------------------ fee lines


async def upload_lines(exchange: Exchange) -> dict[str, Any]:
    """2204 (outpatient, grouped by chrg_bchno) and 2301 (inpatient; refund lines with negative cnt)."""
    async def work() -> dict[str, Any]:
        outpatient = exchange.infno == "2204"
        feedetail = exchange.input.get("feedetail")
        if not isinstance(feedetail, list) or not feedetail or not isinstance(feedetail[0], dict):
            raise Refused("input.feedetail must list the fee lines")
        mdtrt_id, psn_no = _visit_keys(feedetail[0])
        lines = parse_fee_lines(feedetail, mdtrt_id=mdtrt_id, psn_no=psn_no, batched=outpatient,
                                refunds_allowed=not outpatient)
        admdvs = _home_of(exchange, mdtrt_id, psn_no)
        registry = exchange.ctx.registry
        treatment = province_of(exchange.institution.admdvs)
        split = []
        for line in lines:
            entry = registry.medical_catalogue.get((treatment, line.med_list_codg)) or \
                registry.medical_catalogue.get(("000000", line.med_list_codg))
            if entry is None and line.med_list_codg in registry.category_of:
                # A national entry imported before hospitals existed: its category, 甲类.
                entry = CatalogueEntry(registry.category_of[line.med_list_codg])
            split.append(split_line(line, entry))
        call = await _call(exchange, psn_no, mdtrt_id=mdtrt_id, lines=[MedicalLine(
            feedetl_sn=s.line.feedetl_sn, init_feedetl_sn=s.line.init_feedetl_sn, chrg_bchno=s.line.chrg_bchno,
            med_list_codg=s.line.med_list_codg, amount_fen=s.line.amount_fen, cnt=str(s.line.cnt),
            price_fen=s.line.price_fen, fulamt_fen=s.fulamt_fen, overlmt_fen=s.overlmt_fen,
            preselfpay_fen=s.preselfpay_fen, inscp_fen=s.inscp_fen, daily_goods=s.daily_goods,
            chrgitm_lv=s.chrgitm_lv, selfpay_prop=str(s.selfpay_prop)) for s in split])
        return await _apply(exchange, admdvs, call, lambda result: {"result": nhsa_output.line_results(result.lines)})

    return await _refusing(exchange, work)


async def drop_lines(exchange: Exchange) -> dict[str, Any]:
    """2205 (outpatient: a batch, "0000" all unsettled) and 2302 (inpatient: input.data is a list of lines)."""
    async def work() -> dict[str, Any]:
        if exchange.infno == "2205":
            data = _part(exchange, "data")
            mdtrt_id, psn_no = _visit_keys(data)
            fields: dict[str, Any] = {"chrg_bchno": text(data.get("chrg_bchno"), "chrg_bchno", max_length=30)}
        else:
            listed = exchange.input.get("data")
            if not isinstance(listed, list) or not listed or not all(isinstance(item, dict) for item in listed):
                raise Refused("input.data must list the lines to drop ({feedetl_sn, mdtrt_id, psn_no})")
            mdtrt_id, psn_no = _visit_keys(listed[0])
            if any(_visit_keys(item) != (mdtrt_id, psn_no) for item in listed):
                raise Refused("every line of a 2302 must be of one visit and person")
            fields = {"feedetl_sns": [text(item.get("feedetl_sn"), "feedetl_sn", max_length=30) for item in listed]}
        admdvs = _home_of(exchange, mdtrt_id, psn_no)
        call = await _call(exchange, psn_no, mdtrt_id=mdtrt_id, **fields)
        return await _apply(exchange, admdvs, call, lambda result: {"result": [
            {"feedetl_sn": line.feedetl_sn} for line in result.lines]})

    return await _refusing(exchange, work)


# ------------------------------------------------------------------------------------------------ settling


async def _settlement_call(exchange: Exchange) -> tuple[str, MedicalCall]:
    data = _part(exchange, "data")
    mdtrt_id, psn_no = _visit_keys(data)
    outpatient = exchange.infno in ("2206", "2207")
    insutype = _insutype(data)
    acct_used_flag = text(data.get("acct_used_flag"), "acct_used_flag", max_length=1)
    if acct_used_flag not in ("0", "1"):
        raise Refused("acct_used_flag must be 0 or 1")
    psn_setlway = text(data.get("psn_setlway"), "psn_setlway", max_length=2)
    if psn_setlway != "01":
        raise Refused("psn_setlway must be 01 (按项目结算)")
    medfee_fen = amount_fen(data.get("medfee_sumamt"), "medfee_sumamt")
    fields: dict[str, Any] = {"mdtrt_id": mdtrt_id, "insutype": insutype, "medfee_fen": medfee_fen,
                              "use_accounts": acct_used_flag == "1"}
    if outpatient:
        fields["chrg_bchno"] = text(data.get("chrg_bchno"), "chrg_bchno", max_length=30)
        text(data.get("med_type"), "med_type", max_length=6)
    else:
        mid_setl_flag = text(data.get("mid_setl_flag"), "mid_setl_flag", max_length=1, required=False) or "0"
        if mid_setl_flag != "0":
            raise Refused("mid_setl_flag must be 0: a stay is settled whole, after discharge (2402)")
    home = _home_of(exchange, mdtrt_id, psn_no)
    admdvs = await _payer_by_credential(exchange, data, psn_no)
    if admdvs != home:
        raise Refused(f"unknown mdtrt_id {mdtrt_id} (no visit of this psn_no)")
    return admdvs, await _call(exchange, psn_no, **fields)


async def presettle(exchange: Exchange) -> dict[str, Any]:
    """2206 / 2303: what 2207 / 2304 would make now; nothing moves."""
    async def work() -> dict[str, Any]:
        admdvs, call = await _settlement_call(exchange)
        try:
            result = await exchange.ctx.nodes.medical_preview(admdvs, call)
        except NODE_ERRORS as exc:
            raise Refused(node_refusal(admdvs, exc, moves_money=False)) from exc
        assert result.settlement is not None
        return await exchange.finish_with(exchange.answer({
            "setlinfo": nhsa_output.medical_setlinfo(result.settlement, result.balances_after, admdvs),
            "setldetail": nhsa_output.medical_setldetail(result.settlement)}))

    return await _refusing(exchange, work)


async def settle(exchange: Exchange) -> dict[str, Any]:
    """2207 (one outpatient batch) / 2304 (the whole stay, after 2402)."""
    async def work() -> dict[str, Any]:
        admdvs, call = await _settlement_call(exchange)

        def render(result: MedicalResult) -> dict[str, Any]:
            assert result.settlement is not None
            return {"setlinfo": nhsa_output.medical_setlinfo(result.settlement, result.balances_after, admdvs),
                    "setldetail": nhsa_output.medical_setldetail(result.settlement)}

        return await _apply(exchange, admdvs, call, render)

    return await _refusing(exchange, work)


async def cancel(exchange: Exchange) -> dict[str, Any]:
    """2208 / 2305: everything back where it came from, the deductible and cap used included."""
    async def work() -> dict[str, Any]:
        data = _part(exchange, "data")
        mdtrt_id, psn_no = _visit_keys(data)
        setl_id = text(data.get("setl_id"), "setl_id", max_length=40)
        async with ReadView(exchange.ctx.db) as view:
            known = await medical_records.record_of(view, setl_id)
        if known is not None:
            if known.fixmedins_code != exchange.institution.fixmedins_code:
                raise Refused(f"settlement {setl_id} was made by another institution")
            if known.psn_no != psn_no or known.mdtrt_id != mdtrt_id:
                raise Refused(f"settlement {setl_id} is not of this psn_no and mdtrt_id")
            if known.state != "SETTLED":
                raise Refused(f"settlement {setl_id} is {known.state.lower()} already; there is nothing to cancel")
        admdvs = _home_of(exchange, mdtrt_id, psn_no)
        call = await _call(exchange, psn_no, mdtrt_id=mdtrt_id, setl_id=setl_id)

        def render(result: MedicalResult) -> dict[str, Any]:
            assert result.settlement is not None
            settlement = result.settlement
            return {"setlinfo": nhsa_output.medical_setlinfo(settlement, result.balances_after, admdvs, cancel=True),
                    "setldetail": nhsa_output.medical_setldetail(settlement, cancel=True)}

        return await _apply(exchange, admdvs, call, render)

    return await _refusing(exchange, work)


# ------------------------------------------------------------------------------------------------ 2601


REVERSIBLE = Reversible(infnos=REVERSIBLE_INFNOS,
                        otherwise=f"2601 from a hospital or clinic reverses {', '.join(REVERSIBLE_INFNOS)} only",
                        never={})


async def _ask_node(exchange: Exchange, admdvs: str, reversal: Reversal) -> MedicalResult:
    call = await _call(exchange, reversal.psn_no, omsgid=reversal.omsgid, oinfno=reversal.oinfno)
    return await exchange.ctx.nodes.medical_apply(admdvs, call)


async def _conclude(exchange: Exchange, uow: UnitOfWork, admdvs: str, result: MedicalResult) -> dict[str, Any]:
    output: dict[str, Any] = {}
    if result.settlement is not None:
        await medical_records.record(exchange.ctx, uow, result.settlement, institution=exchange.institution,
                                     payer_admdvs=admdvs, msgid=exchange.msgid, infno="2601")
        output["setlinfo"] = nhsa_output.medical_setlinfo(result.settlement, result.balances_after, admdvs,
                                       cancel=result.effect == "REFUND")
    if result.visit is not None:
        output["mdtrt_id"], output["visit_state"] = result.visit.mdtrt_id, result.visit.state
    return output


REVERSAL = ReversalFlow[MedicalResult](reversible=REVERSIBLE, ask_node=_ask_node,
                                       undone=lambda result: result.undone, conclude=_conclude)


async def reverse(exchange: Exchange) -> dict[str, Any]:
    """2601 from a hospital or clinic: reverses 2207, 2208, 2304, 2305 or 2401 (by omsgid), or, when the
    original never arrived, makes sure it never takes effect (the flow: service_layer/pos/reversal.py)."""
    return await reverse_with(exchange, REVERSAL)


# ------------------------------------------------------------------------------------------------ 3201


async def _totals(view: ReadView, code: str, asked: Reconciliation) -> dict[str, int]:
    return await medical_records.totals(view, code, asked.first_day, asked.last_day, asked.setl_optins or None,
                                        asked.insutype or None)


async def reconcile(exchange: Exchange) -> dict[str, Any]:
    """3201 from a hospital or clinic: its settlements in effect over the dates, fund's part included."""
    return await reconcile_with(exchange, _totals, checked_insutype=True)


HANDLERS: dict[str, Handler] = {
    "2201": register, "2202": visit_step, "2203": visit_step, "2204": upload_lines, "2205": drop_lines,
    "2206": presettle, "2207": settle, "2208": cancel,
    "2401": register, "2301": upload_lines, "2302": drop_lines, "2402": visit_step, "2303": presettle,
    "2304": settle, "2305": cancel, "2404": visit_step, "2405": visit_step,
}
MEDICAL_INFNOS = tuple(HANDLERS)
# For hospitals and clinics, these shared infnos have their own handlers.
SHARED_HANDLERS: dict[str, Handler] = {"2601": reverse, "3201": reconcile}


async def _refuse_pharmacy_infno(exchange: Exchange) -> dict[str, Any]:
    return await _refusing(exchange, _never)


async def _never() -> dict[str, Any]:
    raise AssertionError("refusal_by_kind refuses 2101-2103 from hospitals and clinics first")


def handler_for(exchange: Exchange) -> Handler | None:
    """The handler of this message when it is a hospital's or clinic's (None: the pharmacy interface's). Kept to
    dictionary lookups: a pharmacy's 2102 passes through here on its hot path."""
    infno = exchange.infno
    medical = HANDLERS.get(infno)
    if medical is not None:
        return medical  # refuses pharmacies itself (refusal_by_kind)
    profile = exchange.ctx.registry.profiles.get(exchange.institution.fixmedins_code)
    if profile is None or profile[0] == "pharmacy":
        return None
    if infno in PHARMACY_INFNOS:
        return _refuse_pharmacy_infno
    return SHARED_HANDLERS.get(infno)
