"""The national 两定机构 interface, one handler per infno (API.md "POS API"): 9001 sign in, 1101 person,
2101 pre-settle, 2102 settle, 2103 cancel, 2601 reversal, 3201 reconciliation.

`call_service` is the whole exchange: 401 for anything wrong with the x-tif headers (nothing happens), else
HTTP 200 with infcode 0, or -1 and an err_msg saying what was wrong. Money moves only at the payer's home node;
the gateway waits for it at most `province_call_timeout_s`. When the node cannot be reached the answer is -1
and nothing was charged; when it does not answer in time the answer is -1 "outcome unknown", and a 2601 then
makes both sides agree, whether the original took effect, is still on its way, or never arrives."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from services.pharmacy_gateway.adapters import federation_http as remote
from services.pharmacy_gateway.domain.bill import BillSplit, parse_bill, split_bill
from services.pharmacy_gateway.domain.wire import (
    Refused,
    amount_fen,
    check_msgid,
    parse_date,
    parse_wire_time,
    text,
    wire_time,
    yuan,
)
from services.pharmacy_gateway.service_layer import settlements
from services.pharmacy_gateway.service_layer.context import SIGN_INS, GatewayContext
from services.pharmacy_gateway.service_layer.exchange import (
    MESSAGES,
    Exchange,
    NonceReplayed,
    authenticate,
    check_signed_in,
    logged_message,
    parse_envelope,
    read_message,
    request_hash,
)
from services.pharmacy_gateway.service_layer.routing import Payer, payer_of
from shared.clock import SHANGHAI
from shared.contracts.internal_api import (
    PosBalances,
    PosCancelRequest,
    PosPayment,
    PosPaymentRequest,
    PosPaymentResult,
    PosPersonQuery,
    PosReverseRequest,
)
from shared.db import ReadView, UnitOfWork
from shared.ids import age_on
from shared.regions import is_admdvs, province_of

log = logging.getLogger("yibao.gateway.pos")

Handler = Callable[[Exchange], Awaitable[dict[str, Any]]]


async def call_service(ctx: GatewayContext, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """The national envelope answering one message, a refusal included. A caller that is not an institution
    (Unauthenticated) or a nonce used already (NonceReplayed) is raised: the route answers those with 401."""
    received_at = ctx.clock.now()
    institution, nonce = await authenticate(ctx, headers)
    exchange = Exchange(ctx, institution, institution.paas_id, nonce, {}, "", received_at)
    try:
        try:
            exchange.envelope = parse_envelope(ctx, raw, institution)
            await check_signed_in(ctx, exchange.envelope, institution)
        except Refused as refused:
            await exchange.consume_nonce_only()
            return exchange.refuse(str(refused))
        exchange.request_hash = request_hash(exchange.envelope)
        handler = medical_handlers.handler_for(exchange) or HANDLERS[exchange.infno]
        return await handler(exchange)
    except NonceReplayed:
        raise
    except Exception:
        # A bug or the gateway's own database, never the till's fault; the till is told to reverse if in doubt.
        log.exception("POS message %s failed", exchange.envelope.get("infno"))
        return exchange.refuse("the gateway failed to process the message; if it was a 2102 or 2103, "
                               "reverse it with 2601 to be sure")


# ------------------------------------------------------------------------------------------------ helpers


def _data(exchange: Exchange) -> dict[str, Any]:
    data = exchange.input.get("data")
    if not isinstance(data, dict):
        raise Refused("input.data must be an object")
    return data


def _node_refusal(payer_admdvs: str, exc: Exception, *, moves_money: bool) -> str:
    if isinstance(exc, remote.Refused):
        return exc.message or exc.code
    if isinstance(exc, remote.Unreachable):
        tail = "; nothing was charged" if moves_money else ""
        return f"the payer's home province {payer_admdvs} is unavailable{tail}; try again later"
    where = f"the payer's home province {payer_admdvs}: {exc}"
    if moves_money:
        return f"{where}; the outcome is unknown: reverse this message with 2601 before trying again"
    return f"{where}; try again"


_NODE_ERRORS = (remote.Refused, remote.Unreachable, remote.OutcomeUnknown)


def _answer_by(ctx: GatewayContext) -> datetime:
    """Until when the gateway waits for the payer's node, from now (just before the call): the node applies
    nothing that reaches its ledger later."""
    return ctx.clock.now() + timedelta(seconds=ctx.settings.province_call_timeout_s)


def _balc(balances: PosBalances) -> dict[str, float]:
    return {"balc": yuan(balances.personal_account_fen or 0), "wallet_balc": yuan(balances.wallet_fen or 0),
            "quota_balc": yuan(balances.quota_fen)}


# ------------------------------------------------------------------------------------------------ 9001


async def sign_in(exchange: Exchange) -> dict[str, Any]:
    try:
        sign = exchange.input.get("signIn")
        if not isinstance(sign, dict):
            raise Refused("input.signIn must be an object")
        opter_no = text(sign.get("opter_no"), "signIn.opter_no", max_length=30)
        mac = text(sign.get("mac"), "signIn.mac", max_length=40, required=False)
        ip = text(sign.get("ip"), "signIn.ip", max_length=64, required=False)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    ctx = exchange.ctx
    now = ctx.clock.now()
    sign_no = now.astimezone(SHANGHAI).strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**16):016d}"

    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        await uow.execute(sa.insert(SIGN_INS).values(
            sign_no=sign_no, fixmedins_code=exchange.institution.fixmedins_code, opter_no=opter_no, mac=mac, ip=ip,
            sign_time=now))
        return exchange.answer({"signinoutb": {"sign_time": wire_time(now), "sign_no": sign_no}})

    response = await exchange.finish(build)
    if response.get("infcode") == 0:
        signed = response["output"]["signinoutb"]["sign_no"]
        ctx.registry.sign_ins[signed] = exchange.institution.fixmedins_code
    return response


# ------------------------------------------------------------------------------------------------ 1101


def _cert(data: dict[str, Any]) -> tuple[str, str]:
    cert_type = text(data.get("mdtrt_cert_type"), "mdtrt_cert_type", max_length=2)
    cert_no = text(data.get("mdtrt_cert_no"), "mdtrt_cert_no", max_length=2048)
    return cert_type, cert_no


async def person(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        payer = await payer_of(ctx, *_cert(_data(exchange)))
        try:
            found = await ctx.nodes.person(payer.admdvs, PosPersonQuery(psn_no=payer.psn_no))
        except _NODE_ERRORS as exc:
            raise Refused(_node_refusal(payer.admdvs, exc, moves_money=False)) from exc
        if found is None:
            raise Refused("the person is no longer insured in their home province")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    today = ctx.clock.now().astimezone(SHANGHAI).date()
    output = {
        "baseinfo": {"psn_no": found.psn_no, "psn_name": found.name, "gend": found.gend,
                     "brdy": found.brdy.isoformat() if found.brdy else None,
                     "age": age_on(found.brdy, today) if found.brdy else None, "certno": found.certno_masked,
                     "psn_cert_type": "01"},
        "insuinfo": [{"balc": yuan(found.personal_account_fen or 0), "insutype": found.insutype,
                      # psn_insu_stas: 1 insured (正常参保), 4 insurance ended (终止参保)
                      "psn_insu_stas": "1" if found.insured else "4", "insuplc_admdvs": found.insuplc_admdvs,
                      "pooling_admdvs": found.pooling_admdvs}],
        "mulaidinfo": {"wallet_balc": yuan(found.wallet_fen or 0), "quota_balc": yuan(found.quota_fen)},
    }
    return await exchange.finish_with(exchange.answer(output))


# ------------------------------------------------------------------------------------------------ 2101 / 2102


@dataclass(frozen=True)
class Purchase:
    payer: Payer
    bill: BillSplit
    request: PosPaymentRequest
    cert_type: str
    med_type: str


async def _purchase(exchange: Exchange) -> Purchase:
    """Everything 2101 and 2102 check before asking the node; a refusal here changes nothing anywhere."""
    data = _data(exchange)
    psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
    insutype = text(data.get("insutype"), "insutype", max_length=3)
    if insutype not in ("310", "390"):
        raise Refused("insutype must be 310 (employee) or 390 (resident)")
    acct_used_flag = text(data.get("acct_used_flag"), "acct_used_flag", max_length=1)
    if acct_used_flag not in ("0", "1"):
        raise Refused("acct_used_flag must be 0 or 1")
    med_type = text(data.get("med_type"), "med_type", max_length=6)
    if med_type != "41":
        raise Refused("med_type must be 41 (定点药店购药)")
    parse_wire_time(data.get("begntime"), "begntime")
    bill = split_bill(parse_bill(data.get("medfee_sumamt"), exchange.input.get("drugdetail")),
                      exchange.ctx.registry.category_of)
    cert_type, cert_no = _cert(data)
    payer = await payer_of(exchange.ctx, cert_type, cert_no)
    if payer.psn_no != psn_no:
        raise Refused("psn_no is not the person of the presented credential (mdtrt_cert_no)")
    claimed = exchange.envelope.get("insuplc_admdvs")
    if claimed and (not is_admdvs(claimed) or province_of(claimed) != province_of(payer.admdvs)):
        raise Refused(f"insuplc_admdvs {claimed} is not the payer's insured province {payer.admdvs} (see 1101)")
    request = PosPaymentRequest(msgid=exchange.msgid, psn_no=psn_no, insutype=insutype,
                                fixmedins_code=exchange.institution.fixmedins_code, medfee_fen=bill.medfee_fen,
                                eligible_fen=bill.eligible_fen, use_accounts=acct_used_flag == "1")
    return Purchase(payer, bill, request, cert_type, med_type)


def _setlinfo(purchase: Purchase, *, mdtrt_id: str, acct_pay_fen: int, wallet_pay_fen: int, quota_pay_fen: int,
              cash_pay_fen: int, balances: PosBalances, setl_time: str) -> dict[str, Any]:
    bill = purchase.bill
    return {
        "mdtrt_id": mdtrt_id, "psn_no": purchase.request.psn_no, "insutype": purchase.request.insutype,
        "med_type": purchase.med_type, "mdtrt_cert_type": purchase.cert_type, "setl_time": setl_time,
        "medfee_sumamt": yuan(bill.medfee_fen), "fulamt_ownpay_amt": yuan(bill.self_pay_fen),
        "inscp_scp_amt": yuan(bill.eligible_fen), "hifp_pay": yuan(0), "fund_pay_sumamt": yuan(0),
        "psn_part_amt": yuan(bill.medfee_fen), "acct_pay": yuan(acct_pay_fen),
        "acct_mulaid_pay": yuan(wallet_pay_fen + quota_pay_fen), "psn_cash_pay": yuan(cash_pay_fen),
        "wallet_pay": yuan(wallet_pay_fen), "quota_pay": yuan(quota_pay_fen),
        "clr_optins": purchase.payer.admdvs, **_balc(balances)}


def _feedetail(bill: BillSplit) -> list[dict[str, Any]]:
    """Per item: inscp_scp_amt (accounts may pay) or fulamt_ownpay_amt (cash only, e.g. daily goods)."""
    return [{"feedetl_sn": p.line.feedetl_sn, "med_list_codg": p.line.med_list_codg,
             "det_item_fee_sumamt": yuan(p.line.fee_fen),
             "inscp_scp_amt": yuan(p.line.fee_fen if p.eligible else 0),
             "fulamt_ownpay_amt": yuan(0 if p.eligible else p.line.fee_fen)} for p in bill.lines]


async def presettle(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        purchase = await _purchase(exchange)
        try:
            preview = await ctx.nodes.preview(purchase.payer.admdvs, purchase.request)
        except _NODE_ERRORS as exc:
            raise Refused(_node_refusal(purchase.payer.admdvs, exc, moves_money=False)) from exc
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    setlinfo = _setlinfo(purchase, mdtrt_id=preview.mdtrt_id, acct_pay_fen=preview.acct_pay_fen,
                         wallet_pay_fen=preview.wallet_pay_fen, quota_pay_fen=preview.quota_pay_fen,
                         cash_pay_fen=preview.cash_pay_fen, balances=preview.balances_after,
                         setl_time=wire_time(ctx.clock.now()))
    return await exchange.finish_with(exchange.answer(
        {"setlinfo": setlinfo, "setldetail": [], "feedetail": _feedetail(purchase.bill)}))


def _reversed_note(row: Any) -> str | None:
    return f"message {row.msgid} was reversed by 2601 {row.reversed_by}" if row is not None and row.reversed_by \
        else None


async def settle(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        purchase = await _purchase(exchange)
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    admdvs = purchase.payer.admdvs
    instead = await exchange.begin(admdvs)
    if instead is not None:
        return instead
    try:
        result = await ctx.nodes.settle(admdvs, purchase.request.model_copy(update={"answer_by": _answer_by(ctx)}))
    except _NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(_node_refusal(admdvs, exc, moves_money=True)))
    payment = result.payment
    assert payment is not None, "a settle always answers with its payment"

    async def build(uow: UnitOfWork, row: Any) -> dict[str, Any]:
        await settlements.record(ctx, uow, payment, institution=exchange.institution, payer_admdvs=admdvs,
                                 msgid=exchange.msgid)
        reversed_note = _reversed_note(row)
        if reversed_note:
            return exchange.refuse(reversed_note)
        setlinfo = _setlinfo(purchase, mdtrt_id=payment.mdtrt_id, acct_pay_fen=payment.acct_pay_fen,
                             wallet_pay_fen=payment.wallet_pay_fen, quota_pay_fen=payment.quota_pay_fen,
                             cash_pay_fen=payment.cash_pay_fen, balances=result.balances_after,
                             setl_time=wire_time(payment.settled_at))
        return exchange.answer({"setlinfo": {"setl_id": payment.setl_id, **setlinfo}, "setldetail": [],
                                "feedetail": _feedetail(purchase.bill)})

    return await exchange.finish(build)


# ------------------------------------------------------------------------------------------------ 2103


def _cancel_output(payment: PosPayment, balances: PosBalances) -> dict[str, Any]:
    """What went back where: the amounts of the cancelled settlement, by the part they were paid from."""
    account_fen = payment.acct_pay_fen + payment.mulaid_pay_fen
    return {"setlinfo": {
        "setl_id": payment.setl_id, "mdtrt_id": payment.mdtrt_id, "psn_no": payment.psn_no,
        "setl_state": payment.state, "medfee_sumamt": yuan(payment.medfee_fen), "fund_pay_sumamt": yuan(0),
        "psn_pay": yuan(payment.medfee_fen), "acct_pay": yuan(payment.acct_pay_fen),
        "acct_mulaid_pay": yuan(payment.mulaid_pay_fen), "cash_payamt": yuan(payment.medfee_fen - account_fen),
        "wallet_pay": yuan(payment.wallet_pay_fen), "quota_pay": yuan(payment.quota_pay_fen),
        **_balc(balances)}}


async def cancel(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        data = _data(exchange)
        setl_id = text(data.get("setl_id"), "setl_id", max_length=40)
        mdtrt_id = text(data.get("mdtrt_id"), "mdtrt_id", max_length=40)
        psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
        async with ReadView(ctx.db) as view:
            known = await settlements.settlement(view, setl_id)
        if known is None:
            raise Refused(f"no settlement {setl_id} is known to the gateway")
        if known.fixmedins_code != exchange.institution.fixmedins_code:
            raise Refused(f"settlement {setl_id} was made by another institution")
        if known.psn_no != psn_no or known.mdtrt_id != mdtrt_id:
            raise Refused(f"settlement {setl_id} is not of this psn_no and mdtrt_id")
        if known.state == "REVERSED":
            raise Refused(f"settlement {setl_id} was reversed; there is nothing to cancel")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    admdvs = known.payer_admdvs
    instead = await exchange.begin(admdvs, setl_id)
    if instead is not None:
        return instead
    request = PosCancelRequest(msgid=exchange.msgid, setl_id=setl_id, psn_no=psn_no,
                               fixmedins_code=exchange.institution.fixmedins_code, answer_by=_answer_by(ctx))
    try:
        result = await ctx.nodes.cancel(admdvs, request)
    except _NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(_node_refusal(admdvs, exc, moves_money=True)))
    return await exchange.finish(_recording(exchange, result, admdvs, _cancel_output))


def _recording(exchange: Exchange, result: PosPaymentResult, admdvs: str,
               output: Callable[[PosPayment, PosBalances], dict[str, Any]]) -> Callable[
                   [UnitOfWork, Any], Awaitable[dict[str, Any]]]:
    async def build(uow: UnitOfWork, row: Any) -> dict[str, Any]:
        if result.payment is not None:
            await settlements.record(exchange.ctx, uow, result.payment, institution=exchange.institution,
                                     payer_admdvs=admdvs, msgid=exchange.msgid)
        reversed_note = _reversed_note(row)
        if reversed_note:
            return exchange.refuse(reversed_note)
        assert result.payment is not None
        return exchange.answer(output(result.payment, result.balances_after))

    return build


# ------------------------------------------------------------------------------------------------ 2601


async def reverse(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    code = exchange.institution.fixmedins_code
    try:
        data = _data(exchange)
        psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
        oinfno_text = text(data.get("oinfno"), "oinfno", max_length=4)
        if oinfno_text == "2101":
            raise Refused("a pre-settle (2101) moves nothing; 2601 cannot reverse it")
        if oinfno_text not in ("2102", "2103"):
            raise Refused("2601 reverses a 2102 (settle) or a 2103 (cancel) only")
        oinfno: Literal["2102", "2103"] = "2102" if oinfno_text == "2102" else "2103"
        omsgid = check_msgid(data.get("omsgid"), code, "omsgid")
        if omsgid == exchange.msgid:
            raise Refused("a message cannot reverse itself")
        original = await read_message(ctx, omsgid)
        if original is not None and original.request_hash is not None:
            if original.infno == "2101":
                raise Refused("a pre-settle (2101) moves nothing; 2601 cannot reverse it")
            if original.infno != oinfno:
                raise Refused(f"message {omsgid} was a {original.infno}, not a {oinfno}")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    if original is not None:
        if original.payer_admdvs is None:
            return await exchange.finish(_reversal_without_node(exchange, omsgid, oinfno))
        admdvs, setl_id = original.payer_admdvs, original.setl_id
    elif is_admdvs(psn_no[:6]):
        # Not in the log: it never arrived, it is on its way, or the gateway restarted after asking the node
        # and before the log's commit (a PENDING row is not waited for: see Exchange.begin). The payer's home
        # province, which a psn_no begins with, is asked all the same: it undoes what it did, or makes sure
        # that the original, should it still come, never takes effect.
        admdvs, setl_id = province_of(psn_no[:6]), None
    else:
        return await exchange.finish(_reversal_without_node(exchange, omsgid, oinfno))
    instead = await exchange.begin(admdvs, setl_id)
    if instead is not None:
        return instead
    request = PosReverseRequest(msgid=exchange.msgid, omsgid=omsgid, oinfno=oinfno, psn_no=psn_no,
                                fixmedins_code=code)
    try:
        result = await ctx.nodes.reverse(admdvs, request)
    except _NODE_ERRORS as exc:
        return await exchange.finish_with(exchange.refuse(_node_refusal(admdvs, exc, moves_money=True)))

    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        if await logged_message(uow, omsgid) is None:
            await _leave_tombstone(uow, exchange, omsgid, oinfno)
        else:
            await _mark_reversed(uow, omsgid, exchange.msgid)
        if result.payment is not None:
            await settlements.record(ctx, uow, result.payment, institution=exchange.institution,
                                     payer_admdvs=admdvs, msgid=exchange.msgid)
        output: dict[str, Any] = {"omsgid": omsgid, "oinfno": oinfno, "undone": result.effect != "NONE"}
        if result.payment is not None:
            output |= _cancel_output(result.payment, result.balances_after)
        return exchange.answer(output)

    return await exchange.finish(build)


def _reversal_without_node(exchange: Exchange, omsgid: str,
                           oinfno: str) -> Callable[[UnitOfWork, Any], Awaitable[dict[str, Any]]]:
    """The original never reached any node: it was never logged here (every 2102/2103 is logged before its node
    is asked), or it was refused before that. The gateway's own record is then the whole reversal: the msgid
    is marked so that the original, should it still arrive, is refused."""
    async def build(uow: UnitOfWork, _row: Any) -> dict[str, Any]:
        original = await logged_message(uow, omsgid)
        if original is None:
            await _leave_tombstone(uow, exchange, omsgid, oinfno)
        elif original.payer_admdvs is not None:
            # The original arrived meanwhile and went to its node: this reversal must go there too.
            return exchange.refuse(f"message {omsgid} is being processed right now; send the 2601 again")
        else:
            await _mark_reversed(uow, omsgid, exchange.msgid)
        return exchange.answer({"omsgid": omsgid, "oinfno": oinfno, "undone": False})

    return build


async def _leave_tombstone(uow: UnitOfWork, exchange: Exchange, omsgid: str, oinfno: str) -> None:
    """The log's row for a msgid reversed before the gateway saw it: the original, should it come, is refused."""
    tombstone = exchange.refuse(f"message {omsgid} was reversed by 2601 {exchange.msgid} before it arrived; "
                                "it can never take effect")
    await uow.execute(sa.insert(MESSAGES).values(
        msgid=omsgid, fixmedins_code=exchange.institution.fixmedins_code, infno=oinfno, state="DONE",
        response=orjson.dumps(tombstone), reversed_by=exchange.msgid, received_at=exchange.received_at,
        answered_at=exchange.received_at))


async def _mark_reversed(uow: UnitOfWork, omsgid: str, msgid: str) -> None:
    await uow.execute(sa.update(MESSAGES).where(MESSAGES.c.msgid == omsgid,
                                                            MESSAGES.c.reversed_by.is_(None)).values(
        reversed_by=msgid))


# ------------------------------------------------------------------------------------------------ 3201


async def reconcile(exchange: Exchange) -> dict[str, Any]:
    ctx = exchange.ctx
    try:
        data = _data(exchange)
        first_day = parse_date(data.get("stmt_begndate"), "stmt_begndate")
        last_day = parse_date(data.get("stmt_enddate"), "stmt_enddate")
        if last_day < first_day:
            raise Refused("stmt_enddate is before stmt_begndate")
        setl_optins = text(data.get("setl_optins"), "setl_optins", max_length=6, required=False)
        if setl_optins and not is_admdvs(setl_optins):
            raise Refused("setl_optins must be a 6-digit region code")
        insutype = text(data.get("insutype"), "insutype", max_length=3, required=False)
        theirs = {field: data.get(field) for field in ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")
                  if data.get(field) not in (None, "")}
        their_fen = {field: amount_fen(value, field) for field, value in theirs.items()}
        their_count = data.get("fixmedins_setl_cnt")
        if their_count not in (None, "") and (isinstance(their_count, bool) or not isinstance(their_count, int)
                                               or their_count < 0):
            raise Refused("fixmedins_setl_cnt must be a whole number")
    except Refused as refused:
        return await exchange.finish_with(exchange.refuse(str(refused)))
    async with ReadView(ctx.db) as view:
        ours = await settlements.totals(view, exchange.institution.fixmedins_code, first_day, last_day,
                                        setl_optins or None, insutype or None)
    our_fen = {"medfee_sumamt": ours["medfee_fen"], "fund_pay_sumamt": 0,
               "acct_pay": ours["acct_pay_fen"]}
    differences = [f"{field}: yours {fen / 100:.2f}, ours {our_fen[field] / 100:.2f}"
                   for field, fen in their_fen.items() if fen != our_fen[field]]
    if their_count not in (None, "") and their_count != ours["count"]:
        differences.append(f"fixmedins_setl_cnt: yours {their_count}, ours {ours['count']}")
    output = {"stmtinfo": {
        "fixmedins_code": exchange.institution.fixmedins_code, "stmt_begndate": first_day.isoformat(),
        "stmt_enddate": last_day.isoformat(), "setl_optins": setl_optins or None,
        "fixmedins_setl_cnt": ours["count"], "medfee_sumamt": yuan(ours["medfee_fen"]),
        "fund_pay_sumamt": yuan(0), "acct_pay": yuan(ours["acct_pay_fen"]),
        "acct_mulaid_pay": yuan(ours["mulaid_pay_fen"]), "psn_cash_pay": yuan(ours["cash_pay_fen"]),
        "cancelled_cnt": ours["undone_count"],
        # stmt_rslt: 0 the institution's totals agree with the gateway's (对账平), 1 they do not (不平)
        "stmt_rslt": "1" if differences else "0",
        "stmt_rslt_dscr": "; ".join(differences) if differences else "totals agree",
    }}
    return await exchange.finish_with(exchange.answer(output))


HANDLERS: dict[str, Handler] = {"9001": sign_in, "1101": person, "2101": presettle, "2102": settle, "2103": cancel,
                                "2601": reverse, "3201": reconcile}

# Hospitals and clinics (issue 11): their infnos, and their own 2601 and 3201; imported last, as it builds on
# the helpers above.
from services.pharmacy_gateway.service_layer import medical_handlers  # noqa: E402
