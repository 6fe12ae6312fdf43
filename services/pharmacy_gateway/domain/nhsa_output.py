"""The `output` of each infno's answer (API.md "POS API" and "Medical institutions"), rendered from what the use
cases hold: yuan amounts (two decimals) and national field names. Pure.

It sits in domain/ rather than entrypoints/: the answer is stored in the message log in the same transaction as
what it reports (service_layer/exchange.py), so the use cases render it, and a service layer imports no
entrypoint (tests/unit/test_structure.py)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.pharmacy_gateway.domain.bill import BillSplit
from services.pharmacy_gateway.domain.nhsa_inputs import Purchase, Reconciliation, Reversal
from services.pharmacy_gateway.domain.wire import wire_time, yuan
from shared.contracts.internal_api import PosBalances, PosPayment, PosPerson, PosSplitPreview
from shared.contracts.medical_api import MedicalLine, MedicalSettlement, MedicalVisit
from shared.ids import age_on


def balc(balances: PosBalances) -> dict[str, float]:
    return {"balc": yuan(balances.personal_account_fen or 0), "wallet_balc": yuan(balances.wallet_fen or 0),
            "quota_balc": yuan(balances.quota_fen)}


def sign_in_output(sign_no: str, signed_at: Any) -> dict[str, Any]:
    """9001."""
    return {"signinoutb": {"sign_time": wire_time(signed_at), "sign_no": sign_no}}


def person_output(found: PosPerson, today: date) -> dict[str, Any]:
    """1101: the person, their insurance and what the wallet and quotas hold."""
    return {
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


def _setlinfo(purchase: Purchase, payer_admdvs: str, *, mdtrt_id: str, acct_pay_fen: int, wallet_pay_fen: int,
              quota_pay_fen: int, cash_pay_fen: int, balances: PosBalances, setl_time: str) -> dict[str, Any]:
    bill = purchase.bill
    return {
        "mdtrt_id": mdtrt_id, "psn_no": purchase.psn_no, "insutype": purchase.insutype,
        "med_type": purchase.med_type, "mdtrt_cert_type": purchase.credential.cert_type, "setl_time": setl_time,
        "medfee_sumamt": yuan(bill.medfee_fen), "fulamt_ownpay_amt": yuan(bill.self_pay_fen),
        "inscp_scp_amt": yuan(bill.eligible_fen), "hifp_pay": yuan(0), "fund_pay_sumamt": yuan(0),
        "psn_part_amt": yuan(bill.medfee_fen), "acct_pay": yuan(acct_pay_fen),
        "acct_mulaid_pay": yuan(wallet_pay_fen + quota_pay_fen), "psn_cash_pay": yuan(cash_pay_fen),
        "wallet_pay": yuan(wallet_pay_fen), "quota_pay": yuan(quota_pay_fen),
        "clr_optins": payer_admdvs, **balc(balances)}


def feedetail(bill: BillSplit) -> list[dict[str, Any]]:
    """Per item: inscp_scp_amt (accounts may pay) or fulamt_ownpay_amt (cash only, e.g. daily goods)."""
    return [{"feedetl_sn": p.line.feedetl_sn, "med_list_codg": p.line.med_list_codg,
             "det_item_fee_sumamt": yuan(p.line.fee_fen),
             "inscp_scp_amt": yuan(p.line.fee_fen if p.eligible else 0),
             "fulamt_ownpay_amt": yuan(0 if p.eligible else p.line.fee_fen)} for p in bill.lines]


def presettle_output(purchase: Purchase, payer_admdvs: str, preview: PosSplitPreview,
                     setl_time: str) -> dict[str, Any]:
    """2101: the split 2102 would make now."""
    setlinfo = _setlinfo(purchase, payer_admdvs, mdtrt_id=preview.mdtrt_id, acct_pay_fen=preview.acct_pay_fen,
                         wallet_pay_fen=preview.wallet_pay_fen, quota_pay_fen=preview.quota_pay_fen,
                         cash_pay_fen=preview.cash_pay_fen, balances=preview.balances_after, setl_time=setl_time)
    return {"setlinfo": setlinfo, "setldetail": [], "feedetail": feedetail(purchase.bill)}


def settle_output(purchase: Purchase, payer_admdvs: str, payment: PosPayment,
                  balances: PosBalances) -> dict[str, Any]:
    """2102: the settlement as the payer's node made it."""
    setlinfo = _setlinfo(purchase, payer_admdvs, mdtrt_id=payment.mdtrt_id, acct_pay_fen=payment.acct_pay_fen,
                         wallet_pay_fen=payment.wallet_pay_fen, quota_pay_fen=payment.quota_pay_fen,
                         cash_pay_fen=payment.cash_pay_fen, balances=balances,
                         setl_time=wire_time(payment.settled_at))
    return {"setlinfo": {"setl_id": payment.setl_id, **setlinfo}, "setldetail": [],
            "feedetail": feedetail(purchase.bill)}


def cancel_output(payment: PosPayment, balances: PosBalances) -> dict[str, Any]:
    """2103 (and a 2601 that names its settlement): what went back where, by the part it was paid from."""
    account_fen = payment.acct_pay_fen + payment.mulaid_pay_fen
    return {"setlinfo": {
        "setl_id": payment.setl_id, "mdtrt_id": payment.mdtrt_id, "psn_no": payment.psn_no,
        "setl_state": payment.state, "medfee_sumamt": yuan(payment.medfee_fen), "fund_pay_sumamt": yuan(0),
        "psn_pay": yuan(payment.medfee_fen), "acct_pay": yuan(payment.acct_pay_fen),
        "acct_mulaid_pay": yuan(payment.mulaid_pay_fen), "cash_payamt": yuan(payment.medfee_fen - account_fen),
        "wallet_pay": yuan(payment.wallet_pay_fen), "quota_pay": yuan(payment.quota_pay_fen),
        **balc(balances)}}


def reversal_output(reversal: Reversal, *, undone: bool) -> dict[str, Any]:
    """2601: which message, and whether anything was undone (the rest is per interface)."""
    return {"omsgid": reversal.omsgid, "oinfno": reversal.oinfno, "undone": undone}


def reconcile_output(reconciliation: Reconciliation, fixmedins_code: str, ours: Mapping[str, int],
                     fund_pay_fen: int, differences: list[str]) -> dict[str, Any]:
    """3201: the gateway's totals and whether the institution's agree (fund_pay_fen: 0 at a pharmacy)."""
    return {"stmtinfo": {
        "fixmedins_code": fixmedins_code, "stmt_begndate": reconciliation.first_day.isoformat(),
        "stmt_enddate": reconciliation.last_day.isoformat(), "setl_optins": reconciliation.setl_optins or None,
        "fixmedins_setl_cnt": ours["count"], "medfee_sumamt": yuan(ours["medfee_fen"]),
        "fund_pay_sumamt": yuan(fund_pay_fen), "acct_pay": yuan(ours["acct_pay_fen"]),
        "acct_mulaid_pay": yuan(ours["mulaid_pay_fen"]), "psn_cash_pay": yuan(ours["cash_pay_fen"]),
        "cancelled_cnt": ours["undone_count"],
        # stmt_rslt: 0 the institution's totals agree with the gateway's (对账平), 1 they do not (不平)
        "stmt_rslt": "1" if differences else "0",
        "stmt_rslt_dscr": "; ".join(differences) if differences else "totals agree",
    }}


# ------------------------------------------------------------------------------------------------ hospitals


# fund_pay_type (reviews/hospital.md §4.2): the basic fund of employees / of residents.
FUND_PAY_TYPES = {"310": "310100", "390": "390100"}


def medical_balc(balances: PosBalances | None) -> dict[str, float]:
    return {} if balances is None else balc(balances)


def medical_setlinfo(s: MedicalSettlement, balances: PosBalances | None, payer_admdvs: str, *,
                     cancel: bool = False) -> dict[str, Any]:
    """setlinfo of 2206/2207/2303/2304 (cancel: 2208/2305, the same fields negated, cash also as pdn_cash_pay)."""
    sign = -1 if cancel else 1
    psn_part_fen = s.medfee_fen - s.hifp_pay_fen
    info: dict[str, Any] = {
        "mdtrt_id": s.mdtrt_id, "psn_no": s.psn_no, "insutype": s.insutype, "setl_time": wire_time(s.settled_at),
        "medfee_sumamt": yuan(sign * s.medfee_fen), "fulamt_ownpay_amt": yuan(sign * s.fulamt_fen),
        "overlmt_selfpay": yuan(sign * s.overlmt_fen), "preselfpay_amt": yuan(sign * s.preselfpay_fen),
        "inscp_scp_amt": yuan(sign * s.inscp_fen), "act_pay_dedc": yuan(sign * s.act_pay_dedc_fen),
        "hifp_pay": yuan(sign * s.hifp_pay_fen), "pool_prop_selfpay": float(s.ratio),
        "fund_pay_sumamt": yuan(sign * s.hifp_pay_fen), "psn_part_amt": yuan(sign * psn_part_fen),
        "acct_pay": yuan(sign * s.acct_pay_fen), "acct_mulaid_pay": yuan(sign * s.mulaid_pay_fen),
        "psn_cash_pay": yuan(sign * s.cash_pay_fen), "hosp_part_amt": yuan(0),
        "wallet_pay": yuan(sign * s.wallet_pay_fen), "quota_pay": yuan(sign * s.quota_pay_fen),
        "clr_optins": payer_admdvs, **medical_balc(balances)}
    if s.setl_id:
        info = {"setl_id": s.setl_id, "medins_setl_id": s.msgid, **info}
    if cancel:
        info["pdn_cash_pay"] = info["psn_cash_pay"]
        info["setl_state"] = s.state
    return info


def medical_setldetail(s: MedicalSettlement, *, cancel: bool = False) -> list[dict[str, Any]]:
    sign = -1 if cancel else 1
    detail = []
    if s.hifp_pay_fen:
        detail.append({"fund_pay_type": FUND_PAY_TYPES.get(s.insutype, "310100"),
                       "inscp_scp_amt": yuan(sign * s.inscp_fen), "fund_payamt": yuan(sign * s.hifp_pay_fen)})
    if s.acct_pay_fen:
        detail.append({"fund_pay_type": "310200", "fund_payamt": yuan(sign * s.acct_pay_fen)})
    return detail


def line_results(lines: list[MedicalLine]) -> list[dict[str, Any]]:
    """2204 / 2301: each fee line as split by the catalogue of the province of treatment."""
    return [{"feedetl_sn": line.feedetl_sn, "det_item_fee_sumamt": yuan(line.amount_fen), "cnt": float(line.cnt),
             "pric": yuan(line.price_fen), "fulamt_ownpay_amt": yuan(line.fulamt_fen),
             "overlmt_amt": yuan(line.overlmt_fen), "preselfpay_amt": yuan(line.preselfpay_fen),
             "inscp_scp_amt": yuan(line.inscp_fen), "chrgitm_lv": line.chrgitm_lv,
             "selfpay_prop": float(line.selfpay_prop)} for line in lines]


def visit_output(key: str, visit: MedicalVisit) -> dict[str, Any]:
    """2201 (key "data"), 2401 (key "result"), and the other visit steps (no key)."""
    if key == "data":
        return {"data": {"mdtrt_id": visit.mdtrt_id, "psn_no": visit.psn_no, "ipt_otp_no": visit.ipt_otp_no}}
    if key == "result":
        return {"result": {"mdtrt_id": visit.mdtrt_id, "psn_no": visit.psn_no, "ipt_no": visit.ipt_otp_no}}
    return {"mdtrt_id": visit.mdtrt_id, "state": visit.state}
