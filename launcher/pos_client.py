"""A pharmacy's till, speaking the national 两定机构 interface to the gateway exactly as pharmacy software does:
the national envelope, msgids of fixmedins_code + yyyyMMddHHmmss + seq, yuan amounts, and x-tif-* signatures.
Used by the POS simulator (`yibao pos`), the POS bench, the demo and the end-to-end tests.

    till = PosClient(gateway_url, "P51010000001", "成都康泰大药房", "510100", paas_id, paas_token)
    await till.sign_in()
    who = await till.person("02", id_no)
    pre = await till.presettle(who, [Item("XC08CAA001", 2, "28.50")])
    paid = await till.settle(who, [Item("XC08CAA001", 2, "28.50")])
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Self

import httpx

from services.pharmacy_gateway.domain.tif_auth import (
    HEADER_NONCE,
    HEADER_PAASID,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    tif_signature,
)
from services.pharmacy_gateway.domain.wire import CALL_SERVICE_PATH
from shared.clock import SHANGHAI

# A small catalogue for the simulator, the demo and the tests (national-style codes, made up). Health foods and
# daily goods are not eligible for account payment; the category set has one name for both.
DEMO_CATALOGUE: list[dict[str, str]] = [
    {"med_list_codg": "XC08CAA001A001", "name": "苯磺酸氨氯地平片 5mg×28片", "category": "drug"},
    {"med_list_codg": "XC09CAA001A001", "name": "缬沙坦胶囊 80mg×14粒", "category": "drug"},
    {"med_list_codg": "XA10BAA001A001", "name": "盐酸二甲双胍片 0.5g×60片", "category": "drug"},
    {"med_list_codg": "XN02BEA001A001", "name": "对乙酰氨基酚片 0.5g×20片", "category": "drug"},
    {"med_list_codg": "XR05CAA001A001", "name": "复方甘草口服溶液 100ml", "category": "drug"},
    {"med_list_codg": "C03010100001", "name": "电子血压计", "category": "device"},
    {"med_list_codg": "C14010100001", "name": "医用外科口罩 10只", "category": "device"},
    {"med_list_codg": "S00000000001", "name": "药学服务费", "category": "service"},
    {"med_list_codg": "RY0000000001", "name": "面巾纸 一包", "category": "daily_goods"},
    {"med_list_codg": "BJ0000000001", "name": "钙片（保健食品）", "category": "daily_goods"},
]


@dataclass(frozen=True)
class Item:
    """One line of a bill: `pric_yuan` as text ("28.50") so that no float ever carries money here."""

    med_list_codg: str
    cnt: int | Decimal
    pric_yuan: str

    @property
    def fee_yuan(self) -> Decimal:
        return (Decimal(self.cnt) * Decimal(self.pric_yuan)).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class Payer:
    """Who pays, as the till knows them after 1101 and the credential it read."""

    psn_no: str
    insutype: str
    cert_type: str
    cert_no: str
    insuplc_admdvs: str = ""


class PosFailed(Exception):
    """infcode -1 (or a 401) where success was expected."""

    def __init__(self, response: dict[str, Any], status: int = 200) -> None:
        super().__init__(f"HTTP {status} infcode {response.get('infcode')}: {response.get('err_msg')}")
        self.response = response
        self.status = status


def _wire(value: Any) -> Any:
    """Yuan go out as JSON numbers, as pharmacy software sends them. A Decimal with at most two decimals (or a
    count with four) becomes the float whose shortest repr, which json writes, is that same decimal text
    (28.50 -> 28.5): exact on the wire, and the gateway parses it back with Decimal."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot send {type(value).__name__}")


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, default=_wire, separators=(",", ":")).encode()


class PosClient:
    def __init__(self, gateway_url: str, fixmedins_code: str, fixmedins_name: str, admdvs: str, paas_id: str,
                 paas_token: str, *, http: httpx.AsyncClient | None = None, timeout_s: float = 10.0,
                 opter: str = "0001", opter_name: str = "收银员") -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.fixmedins_code = fixmedins_code
        self.fixmedins_name = fixmedins_name
        self.admdvs = admdvs
        self.paas_id = paas_id
        self.paas_token = paas_token
        self.opter = opter
        self.opter_name = opter_name
        self.sign_no = ""
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s),
                                              limits=httpx.Limits(max_connections=256,
                                                                  max_keepalive_connections=256))
        # The 4-digit sequence of msgids: random start, so two tills (or runs) in the same second rarely meet.
        self._seq = itertools.count(random.randrange(10_000))

    @classmethod
    def registered(cls, gateway_url: str, registration: dict[str, Any], **kwargs: Any) -> Self:
        """From the answer of POST /v1/admin/institutions."""
        return cls(gateway_url, registration["fixmedins_code"], registration["fixmedins_name"],
                   registration["admdvs"], registration["paas_id"], registration["paas_token"], **kwargs)

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()

    # ---------------------------------------------------------------------------------------------- the wire

    def new_msgid(self) -> str:
        now = datetime.now(SHANGHAI).strftime("%Y%m%d%H%M%S")
        return f"{self.fixmedins_code}{now}{next(self._seq) % 10_000:04d}"

    def signed_headers(self) -> dict[str, str]:
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        return {HEADER_PAASID: self.paas_id, HEADER_TIMESTAMP: timestamp, HEADER_NONCE: nonce,
                HEADER_SIGNATURE: tif_signature(timestamp, self.paas_token, nonce),
                "content-type": "application/json"}

    def envelope(self, infno: str, payload: dict[str, Any], *, msgid: str | None = None,
                 insuplc_admdvs: str = "") -> dict[str, Any]:
        return {"infno": infno, "msgid": msgid or self.new_msgid(), "mdtrtarea_admvs": self.admdvs,
                "insuplc_admdvs": insuplc_admdvs, "recer_sys_code": "YBQB", "infver": "V1.0", "opter_type": "1",
                "opter": self.opter, "opter_name": self.opter_name,
                "inf_time": datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
                "fixmedins_code": self.fixmedins_code, "fixmedins_name": self.fixmedins_name,
                "sign_no": self.sign_no, "input": payload}

    async def send(self, envelope: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST one envelope; (HTTP status, response JSON). Where the connection broke before any answer came (a
        kept-alive connection closed under the request, say by a load balancer whose server died), the message
        is sent once more, newly signed, as a till resends after a lost answer: the gateway's message log gives
        a repeated msgid its original answer, so nothing happens twice. Not with `headers` given: a caller
        that signs its own headers (a test of nonces) gets the error."""
        url, body = self.gateway_url + CALL_SERVICE_PATH, dumps(envelope)
        try:
            response = await self.http.post(url, content=body, headers=headers or self.signed_headers())
        except (httpx.RemoteProtocolError, httpx.ConnectError):
            if headers is not None:
                raise
            response = await self.http.post(url, content=body, headers=self.signed_headers())
        return response.status_code, response.json()

    async def call(self, infno: str, payload: dict[str, Any], *, msgid: str | None = None,
                   insuplc_admdvs: str = "") -> dict[str, Any]:
        """One signed message; the response envelope, whatever its infcode."""
        status, body = await self.send(self.envelope(infno, payload, msgid=msgid, insuplc_admdvs=insuplc_admdvs))
        if status != 200:
            raise PosFailed(body, status)
        result: dict[str, Any] = body
        return result

    # ---------------------------------------------------------------------------------------------- infno

    async def sign_in(self, opter_no: str = "0001", mac: str = "00-16-3E-00-00-01", ip: str = "10.0.0.8") -> str:
        response = await self.call("9001", {"signIn": {"opter_no": opter_no, "mac": mac, "ip": ip}})
        output = ok(response)
        self.sign_no = str(output["signinoutb"]["sign_no"])
        return self.sign_no

    async def person(self, cert_type: str, cert_no: str) -> dict[str, Any]:
        return await self.call("1101", {"data": {"mdtrt_cert_type": cert_type, "mdtrt_cert_no": cert_no,
                                                 "psn_cert_type": "01" if cert_type == "02" else ""}})

    async def payer(self, cert_type: str, cert_no: str) -> Payer:
        """1101, then the payer as the till keeps them for the next messages."""
        output = ok(await self.person(cert_type, cert_no))
        insured = output["insuinfo"][0]
        return Payer(output["baseinfo"]["psn_no"], insured["insutype"], cert_type, cert_no,
                     insured["insuplc_admdvs"])

    def purchase(self, payer: Payer, items: list[Item], *, acct_used: bool = True,
                 medfee_sumamt: Decimal | None = None) -> dict[str, Any]:
        """2101/2102 input: the bill with its items (med_type 41, 定点药店购药)."""
        drugdetail = [{"feedetl_sn": f"{index + 1:04d}", "med_list_codg": item.med_list_codg,
                       "medins_list_codg": f"{self.fixmedins_code}-{item.med_list_codg}",
                       "det_item_fee_sumamt": item.fee_yuan, "cnt": Decimal(item.cnt),
                       "pric": Decimal(item.pric_yuan)} for index, item in enumerate(items)]
        total = medfee_sumamt if medfee_sumamt is not None else sum((i.fee_yuan for i in items), Decimal("0.00"))
        return {"data": {"psn_no": payer.psn_no, "mdtrt_cert_type": payer.cert_type,
                         "mdtrt_cert_no": payer.cert_no, "medfee_sumamt": total, "insutype": payer.insutype,
                         "acct_used_flag": "1" if acct_used else "0", "med_type": "41",
                         "begntime": datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")},
                "drugdetail": drugdetail}

    async def presettle(self, payer: Payer, items: list[Item], **kwargs: Any) -> dict[str, Any]:
        return await self.call("2101", self.purchase(payer, items, **kwargs), insuplc_admdvs=payer.insuplc_admdvs)

    async def settle(self, payer: Payer, items: list[Item], *, msgid: str | None = None,
                     **kwargs: Any) -> dict[str, Any]:
        return await self.call("2102", self.purchase(payer, items, **kwargs), msgid=msgid,
                               insuplc_admdvs=payer.insuplc_admdvs)

    async def cancel(self, setl_id: str, mdtrt_id: str, psn_no: str, *, msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2103", {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no}},
                               msgid=msgid)

    async def reverse(self, omsgid: str, oinfno: str, psn_no: str, *, msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2601", {"data": {"psn_no": psn_no, "omsgid": omsgid, "oinfno": oinfno}},
                               msgid=msgid)

    async def reconcile(self, first_day: date, last_day: date, **institution_totals: Any) -> dict[str, Any]:
        """3201 for [first_day, last_day]; pass the till's own totals (medfee_sumamt, acct_pay,
        fixmedins_setl_cnt, ...) to have them compared."""
        return await self.call("3201", {"data": {"stmt_begndate": first_day.isoformat(),
                                                 "stmt_enddate": last_day.isoformat(), **institution_totals}})


def ok(response: dict[str, Any]) -> dict[str, Any]:
    """The output of a successful answer, or PosFailed."""
    if response.get("infcode") != 0:
        raise PosFailed(response)
    output: dict[str, Any] = response["output"]
    return output


# ------------------------------------------------------------------------------------------------ hospitals

# Medical catalogue for the simulator, the demo and the tests (national-style codes, made up): 甲类 (01) fully
# eligible, 乙类 (02) with a first self-pay share, 丙类 (03) full self-pay, some with a price ceiling per unit.
HOSPITAL_CATALOGUE: list[dict[str, Any]] = [
    {"med_list_codg": "001101000010000", "name": "普通门诊诊查费", "category": "service", "chrgitm_lv": "01"},
    {"med_list_codg": "002201000010000", "name": "血常规", "category": "service", "chrgitm_lv": "01"},
    {"med_list_codg": "002202000020000", "name": "C反应蛋白测定", "category": "service", "chrgitm_lv": "02",
     "selfpay_prop": "0.10"},
    {"med_list_codg": "002101000010000", "name": "胸部X线摄影 (DR)", "category": "service", "chrgitm_lv": "02",
     "selfpay_prop": "0.10", "pric_uplmt_amt": "120.00"},
    {"med_list_codg": "001103000010000", "name": "住院床位费 (三人间)", "category": "service", "chrgitm_lv": "01",
     "pric_uplmt_amt": "40.00"},
    {"med_list_codg": "001201000010000", "name": "住院诊查费", "category": "service", "chrgitm_lv": "01"},
    {"med_list_codg": "XJ01DDA201B002", "name": "注射用头孢曲松钠 1g", "category": "drug", "chrgitm_lv": "02",
     "selfpay_prop": "0.05"},
    {"med_list_codg": "XJ01FAA091B001", "name": "注射用阿奇霉素 0.25g", "category": "drug", "chrgitm_lv": "01"},
    {"med_list_codg": "XR05CBA023X001", "name": "盐酸氨溴索口服溶液 100ml", "category": "drug", "chrgitm_lv": "02",
     "selfpay_prop": "0.10"},
    {"med_list_codg": "XB05BBS001B001", "name": "氯化钠注射液 250ml", "category": "drug", "chrgitm_lv": "01"},
    {"med_list_codg": "ZZ0000000301", "name": "进口雾化面罩", "category": "device", "chrgitm_lv": "03"},
    {"med_list_codg": "RY0000000101", "name": "住院生活用品包", "category": "daily_goods"},
    {"med_list_codg": "002301000030000", "name": "糖化血红蛋白测定", "category": "service", "chrgitm_lv": "02",
     "selfpay_prop": "0.10"},
    {"med_list_codg": "XA10BAA001A001", "name": "盐酸二甲双胍片 0.5g×60片", "category": "drug", "chrgitm_lv": "01"},
]
# Hebei's own entries (就医地目录): a lower first self-pay share for the nebuliser solution, a ceiling on DR.
HEBEI_CATALOGUE: list[dict[str, Any]] = [
    {"med_list_codg": "XR05CBA023X001", "name": "盐酸氨溴索口服溶液 100ml", "category": "drug", "chrgitm_lv": "02",
     "selfpay_prop": "0.05"},
    {"med_list_codg": "002101000010000", "name": "胸部X线摄影 (DR)", "category": "service", "chrgitm_lv": "02",
     "selfpay_prop": "0.10", "pric_uplmt_amt": "100.00"},
]


@dataclass(frozen=True)
class Fee:
    """One fee line of a HIS (2204 / 2301); a refund line has a negative cnt and names the line it refunds."""

    med_list_codg: str
    cnt: int | Decimal
    pric_yuan: str
    feedetl_sn: str = ""
    init_feedetl_sn: str = ""

    @property
    def fee_yuan(self) -> Decimal:
        return (Decimal(self.cnt) * Decimal(self.pric_yuan)).quantize(Decimal("0.01"))


async def register_medical_institution(http: httpx.AsyncClient, gateway_url: str, operator_token: str,
                                       fixmedins_code: str, fixmedins_name: str, admdvs: str, *,
                                       kind: str = "hospital", hosp_lv: str = "1") -> dict[str, Any]:
    """POST /v1/admin/institutions for a hospital or clinic (operator token)."""
    response = await http.post(f"{gateway_url}/v1/admin/institutions", json={
        "fixmedins_code": fixmedins_code, "fixmedins_name": fixmedins_name, "admdvs": admdvs, "kind": kind,
        "hosp_lv": hosp_lv}, headers={"authorization": f"Bearer {operator_token}",
                                      "idempotency-key": secrets.token_hex(16)})
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def import_medical_catalogue(http: httpx.AsyncClient, gateway_url: str, operator_token: str,
                                   items: list[dict[str, Any]], admdvs: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"items": items} | ({"admdvs": admdvs} if admdvs else {})
    response = await http.post(f"{gateway_url}/v1/admin/catalogue:import", json=body,
                               headers={"authorization": f"Bearer {operator_token}",
                                        "idempotency-key": secrets.token_hex(16)})
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _now_wire() -> str:
    return datetime.now(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")


class HisClient(PosClient):
    """A hospital information system (HIS) speaking the 22xx-24xx messages as hospital software does:
    register → visit info → fee lines by batch → pre-settle → settle (outpatient); admit → fee lines →
    discharge → pre-settle → settle (inpatient); and the undoing messages."""

    _fee_seq = itertools.count(1)

    def _fee_lines(self, mdtrt_id: str, psn_no: str, fees: list[Fee], *, chrg_bchno: str | None,
                   med_type: str) -> list[dict[str, Any]]:
        lines = []
        for fee in fees:
            line: dict[str, Any] = {
                "feedetl_sn": fee.feedetl_sn or f"F{next(self._fee_seq):09d}", "mdtrt_id": mdtrt_id,
                "psn_no": psn_no, "med_type": med_type, "med_list_codg": fee.med_list_codg,
                "medins_list_codg": f"{self.fixmedins_code}-{fee.med_list_codg}", "det_item_fee_sumamt": fee.fee_yuan,
                "cnt": Decimal(fee.cnt), "pric": Decimal(fee.pric_yuan), "fee_ocur_time": _now_wire(),
                "bilg_dept_codg": "A03", "bilg_dept_name": "内科", "bilg_dr_codg": "D0001", "bilg_dr_name": "王医生"}
            if chrg_bchno is not None:
                line["chrg_bchno"] = chrg_bchno
                line["rx_circ_flag"] = "0"
                line["hosp_appr_flag"] = "1"
            if fee.init_feedetl_sn:
                line["init_feedetl_sn"] = fee.init_feedetl_sn
            lines.append(line)
        return lines

    def _settlement(self, payer: Payer, mdtrt_id: str, medfee_sumamt: Decimal, *, acct_used: bool,
                    chrg_bchno: str | None, med_type: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "psn_no": payer.psn_no, "mdtrt_cert_type": payer.cert_type, "mdtrt_cert_no": payer.cert_no,
            "med_type": med_type, "medfee_sumamt": medfee_sumamt, "psn_setlway": "01", "mdtrt_id": mdtrt_id,
            "acct_used_flag": "1" if acct_used else "0", "insutype": payer.insutype}
        if chrg_bchno is not None:
            data["chrg_bchno"] = chrg_bchno
        else:
            data["mid_setl_flag"] = "0"
        return {"data": data}

    # ---------------------------------------------------------------------------------------------- outpatient

    async def register(self, payer: Payer, *, ipt_otp_no: str | None = None, msgid: str | None = None,
                       dept_name: str = "内科") -> dict[str, Any]:
        return await self.call("2201", {"data": {
            "psn_no": payer.psn_no, "insutype": payer.insutype, "begntime": _now_wire(),
            "mdtrt_cert_type": payer.cert_type, "mdtrt_cert_no": payer.cert_no,
            "ipt_otp_no": ipt_otp_no or f"MZ{secrets.randbelow(10**10):010d}", "atddr_no": "D0001",
            "dr_name": "王医生", "dept_code": "A03", "dept_name": dept_name, "caty": "A03"}},
            msgid=msgid, insuplc_admdvs=payer.insuplc_admdvs)

    async def cancel_registration(self, mdtrt_id: str, psn_no: str, ipt_otp_no: str = "MZ") -> dict[str, Any]:
        return await self.call("2202", {"data": {"psn_no": psn_no, "mdtrt_id": mdtrt_id, "ipt_otp_no": ipt_otp_no}})

    async def visit_info(self, mdtrt_id: str, psn_no: str, *, med_type: str = "11", diag_name: str = "高血压",
                         diag_code: str = "I10.x00") -> dict[str, Any]:
        return await self.call("2203", {
            "mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": psn_no, "med_type": med_type, "begntime": _now_wire(),
                          "main_cond_dscr": "", "dise_codg": diag_code, "dise_name": diag_name},
            "diseinfo": [{"diag_type": "1", "diag_srt_no": "1", "diag_code": diag_code, "diag_name": diag_name,
                          "diag_dept": "内科", "dise_dor_no": "D0001", "dise_dor_name": "王医生",
                          "diag_time": _now_wire(), "vali_flag": "1"}]})

    async def upload(self, mdtrt_id: str, psn_no: str, chrg_bchno: str, fees: list[Fee], *,
                     msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2204", {"feedetail": self._fee_lines(mdtrt_id, psn_no, fees, chrg_bchno=chrg_bchno,
                                                                     med_type="11")}, msgid=msgid)

    async def drop_batch(self, mdtrt_id: str, psn_no: str, chrg_bchno: str) -> dict[str, Any]:
        return await self.call("2205", {"data": {"mdtrt_id": mdtrt_id, "chrg_bchno": chrg_bchno, "psn_no": psn_no}})

    async def presettle_visit(self, payer: Payer, mdtrt_id: str, chrg_bchno: str, medfee_sumamt: Decimal, *,
                              acct_used: bool = True) -> dict[str, Any]:
        return await self.call("2206", self._settlement(payer, mdtrt_id, medfee_sumamt, acct_used=acct_used,
                                                        chrg_bchno=chrg_bchno, med_type="11"),
                               insuplc_admdvs=payer.insuplc_admdvs)

    async def settle_visit(self, payer: Payer, mdtrt_id: str, chrg_bchno: str, medfee_sumamt: Decimal, *,
                           acct_used: bool = True, msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2207", self._settlement(payer, mdtrt_id, medfee_sumamt, acct_used=acct_used,
                                                        chrg_bchno=chrg_bchno, med_type="11"),
                               msgid=msgid, insuplc_admdvs=payer.insuplc_admdvs)

    async def cancel_visit_settlement(self, setl_id: str, mdtrt_id: str, psn_no: str, *,
                                      msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2208", {"data": {"setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no}},
                               msgid=msgid)

    # ---------------------------------------------------------------------------------------------- inpatient

    async def admit(self, payer: Payer, *, ipt_no: str | None = None, msgid: str | None = None,
                    diag_name: str = "肺炎", diag_code: str = "J18.900", dept_name: str = "呼吸内科") -> dict[str, Any]:
        return await self.call("2401", {
            "mdtrtinfo": {"psn_no": payer.psn_no, "insutype": payer.insutype, "coner_name": "", "tel": "",
                          "begntime": _now_wire(), "mdtrt_cert_type": payer.cert_type,
                          "mdtrt_cert_no": payer.cert_no, "med_type": "21",
                          "ipt_no": ipt_no or f"ZY{secrets.randbelow(10**10):010d}", "medrcdno": "",
                          "atddr_no": "D0002", "chfpdr_name": "李医生", "adm_diag_dscr": diag_name,
                          "adm_dept_codg": "A04", "adm_dept_name": dept_name, "adm_bed": "12",
                          "dscg_maindiag_code": diag_code, "dscg_maindiag_name": diag_name},
            "diseinfo": [{"psn_no": payer.psn_no, "diag_type": "1", "maindiag_flag": "1", "diag_srt_no": "1",
                          "diag_code": diag_code, "diag_name": diag_name, "adm_cond": "", "diag_dept": dept_name,
                          "dise_dor_no": "D0002", "dise_dor_name": "李医生", "diag_time": _now_wire()}]},
            msgid=msgid, insuplc_admdvs=payer.insuplc_admdvs)

    async def upload_stay(self, mdtrt_id: str, psn_no: str, fees: list[Fee], *,
                          msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2301", {"feedetail": self._fee_lines(mdtrt_id, psn_no, fees, chrg_bchno=None,
                                                                     med_type="21")}, msgid=msgid)

    async def drop_stay_lines(self, mdtrt_id: str, psn_no: str, feedetl_sns: list[str]) -> dict[str, Any]:
        return await self.call("2302", {"data": [{"feedetl_sn": sn, "mdtrt_id": mdtrt_id, "psn_no": psn_no}
                                                 for sn in feedetl_sns]})

    async def discharge(self, mdtrt_id: str, psn_no: str, insutype: str) -> dict[str, Any]:
        return await self.call("2402", {"dscginfo": {
            "mdtrt_id": mdtrt_id, "psn_no": psn_no, "insutype": insutype, "endtime": _now_wire(),
            "dscg_dept_codg": "A04", "dscg_dept_name": "呼吸内科", "dscg_way": "1"}})

    async def presettle_stay(self, payer: Payer, mdtrt_id: str, medfee_sumamt: Decimal, *,
                             acct_used: bool = True) -> dict[str, Any]:
        return await self.call("2303", self._settlement(payer, mdtrt_id, medfee_sumamt, acct_used=acct_used,
                                                        chrg_bchno=None, med_type="21"),
                               insuplc_admdvs=payer.insuplc_admdvs)

    async def settle_stay(self, payer: Payer, mdtrt_id: str, medfee_sumamt: Decimal, *, acct_used: bool = True,
                          msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2304", self._settlement(payer, mdtrt_id, medfee_sumamt, acct_used=acct_used,
                                                        chrg_bchno=None, med_type="21"),
                               msgid=msgid, insuplc_admdvs=payer.insuplc_admdvs)

    async def cancel_stay_settlement(self, setl_id: str, mdtrt_id: str, psn_no: str, *,
                                     msgid: str | None = None) -> dict[str, Any]:
        return await self.call("2305", {"data": {"mdtrt_id": mdtrt_id, "setl_id": setl_id, "psn_no": psn_no}},
                               msgid=msgid)

    async def cancel_discharge(self, mdtrt_id: str, psn_no: str) -> dict[str, Any]:
        return await self.call("2405", {"data": {"mdtrt_id": mdtrt_id, "psn_no": psn_no}})

    async def cancel_admission(self, mdtrt_id: str, psn_no: str) -> dict[str, Any]:
        return await self.call("2404", {"data": {"mdtrt_id": mdtrt_id, "psn_no": psn_no}})


def total(fees: list[Fee]) -> Decimal:
    return sum((fee.fee_yuan for fee in fees), Decimal("0.00"))
