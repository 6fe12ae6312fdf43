"""What each infno of the national interface takes (API.md "POS API"), parsed from the envelope's `input` into
one frozen type per message: the fields and their limits in one hop. Pure; a refusal is a `Refused` whose text
becomes err_msg, checked in the order the fields are listed here (a message with several faults is told the
first). What needs the gateway's state (the payer behind a credential, the message log) is checked by the use
cases in service_layer/pos/, with the pure rules they apply here (`check_claimed_province`, `route_reversal`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from services.pharmacy_gateway.domain.bill import BillSplit, parse_bill, split_bill
from services.pharmacy_gateway.domain.wire import Refused, amount_fen, check_msgid, parse_date, parse_wire_time, text
from shared.regions import is_admdvs, province_of

INSUTYPES = ("310", "390")  # employees, residents


def data_of(input_: Mapping[str, Any], part: str = "data") -> dict[str, Any]:
    data = input_.get(part)
    if not isinstance(data, dict):
        raise Refused(f"input.{part} must be an object")
    return data


def insutype_of(data: Mapping[str, Any], *, required: bool = True) -> str:
    insutype = text(data.get("insutype"), "insutype", max_length=3, required=required)
    if insutype and insutype not in INSUTYPES:
        raise Refused("insutype must be 310 (employee) or 390 (resident)")
    return insutype


def use_accounts_of(data: Mapping[str, Any]) -> bool:
    """acct_used_flag: 1 the accounts pay what they may, 0 the person pays everything in cash."""
    acct_used_flag = text(data.get("acct_used_flag"), "acct_used_flag", max_length=1)
    if acct_used_flag not in ("0", "1"):
        raise Refused("acct_used_flag must be 0 or 1")
    return acct_used_flag == "1"


def check_claimed_province(claimed: Any, payer_admdvs: str) -> None:
    """The envelope's insuplc_admdvs, when the till sends it, must be in the payer's insured province."""
    if claimed and (not is_admdvs(claimed) or province_of(claimed) != province_of(payer_admdvs)):
        raise Refused(f"insuplc_admdvs {claimed} is not the payer's insured province {payer_admdvs} (see 1101)")


# ------------------------------------------------------------------------------------------------ 9001


@dataclass(frozen=True)
class SignIn:
    opter_no: str
    mac: str
    ip: str


def parse_9001(input_: Mapping[str, Any]) -> SignIn:
    sign = input_.get("signIn")
    if not isinstance(sign, dict):
        raise Refused("input.signIn must be an object")
    return SignIn(opter_no=text(sign.get("opter_no"), "signIn.opter_no", max_length=30),
                  mac=text(sign.get("mac"), "signIn.mac", max_length=40, required=False),
                  ip=text(sign.get("ip"), "signIn.ip", max_length=64, required=False))


# ------------------------------------------------------------------------------------------------ 1101


@dataclass(frozen=True)
class Credential:
    """The credential the till read: mdtrt_cert_type 01 电子凭证 / 02 身份证 / 03 社保卡, and its number."""

    cert_type: str
    cert_no: str


def credential_of(data: Mapping[str, Any]) -> Credential:
    return Credential(cert_type=text(data.get("mdtrt_cert_type"), "mdtrt_cert_type", max_length=2),
                      cert_no=text(data.get("mdtrt_cert_no"), "mdtrt_cert_no", max_length=2048))


def parse_1101(input_: Mapping[str, Any]) -> Credential:
    return credential_of(data_of(input_))


# ------------------------------------------------------------------------------------------------ 2101 / 2102


@dataclass(frozen=True)
class Purchase:
    """2101 (pre-settle) and 2102 (settle): who buys, under which insurance, whether the accounts pay, and the
    bill split into what accounts may pay and what is cash."""

    psn_no: str
    insutype: str
    use_accounts: bool
    med_type: str
    credential: Credential
    bill: BillSplit


def parse_2102(input_: Mapping[str, Any], category_of: Mapping[str, str]) -> Purchase:
    """Also 2101's: the same input. `category_of` is the catalogue (med_list_codg -> category)."""
    data = data_of(input_)
    psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
    insutype = insutype_of(data)
    use_accounts = use_accounts_of(data)
    med_type = text(data.get("med_type"), "med_type", max_length=6)
    if med_type != "41":
        raise Refused("med_type must be 41 (定点药店购药)")
    parse_wire_time(data.get("begntime"), "begntime")
    bill = split_bill(parse_bill(data.get("medfee_sumamt"), input_.get("drugdetail")), category_of)
    return Purchase(psn_no=psn_no, insutype=insutype, use_accounts=use_accounts, med_type=med_type,
                    credential=credential_of(data), bill=bill)


parse_2101 = parse_2102


# ------------------------------------------------------------------------------------------------ 2103


@dataclass(frozen=True)
class Cancel:
    setl_id: str
    mdtrt_id: str
    psn_no: str


def parse_2103(input_: Mapping[str, Any]) -> Cancel:
    data = data_of(input_)
    return Cancel(setl_id=text(data.get("setl_id"), "setl_id", max_length=40),
                  mdtrt_id=text(data.get("mdtrt_id"), "mdtrt_id", max_length=40),
                  psn_no=text(data.get("psn_no"), "psn_no", max_length=32))


# ------------------------------------------------------------------------------------------------ 2601


@dataclass(frozen=True)
class Reversible:
    """Which originals a 2601 may name (`oinfno`), and what it is told otherwise: pharmacies reverse 2102 and
    2103, hospitals and clinics their own messages."""

    infnos: tuple[str, ...]
    otherwise: str
    never: Mapping[str, str]  # infnos that can never be reversed, and why


PHARMACY_REVERSIBLE = Reversible(
    infnos=("2102", "2103"), otherwise="2601 reverses a 2102 (settle) or a 2103 (cancel) only",
    never={"2101": "a pre-settle (2101) moves nothing; 2601 cannot reverse it"})


@dataclass(frozen=True)
class Reversal:
    psn_no: str
    oinfno: str
    omsgid: str


def parse_2601(input_: Mapping[str, Any], reversible: Reversible, *, fixmedins_code: str, msgid: str) -> Reversal:
    data = data_of(input_)
    psn_no = text(data.get("psn_no"), "psn_no", max_length=32)
    oinfno = text(data.get("oinfno"), "oinfno", max_length=4)
    if oinfno in reversible.never:
        raise Refused(reversible.never[oinfno])
    if oinfno not in reversible.infnos:
        raise Refused(reversible.otherwise)
    omsgid = check_msgid(data.get("omsgid"), fixmedins_code, "omsgid")
    if omsgid == msgid:
        raise Refused("a message cannot reverse itself")
    return Reversal(psn_no=psn_no, oinfno=oinfno, omsgid=omsgid)


def check_original(reversible: Reversible, reversal: Reversal, logged_infno: str) -> None:
    """The original, when the log knows its content, must be the message the 2601 says it was."""
    if logged_infno in reversible.never:
        raise Refused(reversible.never[logged_infno])
    if logged_infno != reversal.oinfno:
        raise Refused(f"message {reversal.omsgid} was a {logged_infno}, not a {reversal.oinfno}")


class LoggedOriginal(Protocol):
    """What the message log knows of a 2601's original: where it was sent (None: refused before any node
    was asked), and its settlement."""

    @property
    def payer_admdvs(self) -> str | None: ...

    @property
    def setl_id(self) -> str | None: ...


@dataclass(frozen=True)
class NodeRoute:
    """Ask the payer's home node (`admdvs`) to undo the original, or to make sure it never takes effect."""

    admdvs: str
    setl_id: str | None


@dataclass(frozen=True)
class LocalOnly:
    """No node ever saw the original: the gateway's own record is the whole reversal."""


def route_reversal(original: LoggedOriginal | None, psn_no: str) -> NodeRoute | LocalOnly:
    """Where a 2601 goes. A logged original goes where it went. One not in the log never arrived, is on its
    way, or the gateway restarted after asking the node and before the log's commit (a PENDING row is not
    waited for: see Exchange.begin): the payer's home province, which a psn_no begins with, is asked all the
    same; it undoes what it did, or makes sure the original, should it still come, never takes effect."""
    if original is not None:
        if original.payer_admdvs is None:
            return LocalOnly()
        return NodeRoute(original.payer_admdvs, original.setl_id)
    if is_admdvs(psn_no[:6]):
        return NodeRoute(province_of(psn_no[:6]), None)
    return LocalOnly()


# ------------------------------------------------------------------------------------------------ 3201


@dataclass(frozen=True)
class Reconciliation:
    """3201: the institution's totals over the dates (given ones only), compared with the gateway's."""

    first_day: date
    last_day: date
    setl_optins: str
    insutype: str
    their_fen: Mapping[str, int]  # medfee_sumamt, fund_pay_sumamt, acct_pay: those the institution sent
    their_count: int | None


RECONCILED_AMOUNTS = ("medfee_sumamt", "fund_pay_sumamt", "acct_pay")


def parse_3201(input_: Mapping[str, Any], *, checked_insutype: bool = False) -> Reconciliation:
    """`checked_insutype`: hospitals' and clinics' 3201 refuses an insutype other than 310 and 390."""
    data = data_of(input_)
    first_day = parse_date(data.get("stmt_begndate"), "stmt_begndate")
    last_day = parse_date(data.get("stmt_enddate"), "stmt_enddate")
    if last_day < first_day:
        raise Refused("stmt_enddate is before stmt_begndate")
    setl_optins = text(data.get("setl_optins"), "setl_optins", max_length=6, required=False)
    if setl_optins and not is_admdvs(setl_optins):
        raise Refused("setl_optins must be a 6-digit region code")
    insutype = insutype_of(data, required=False) if checked_insutype else text(
        data.get("insutype"), "insutype", max_length=3, required=False)
    their_fen = {field: amount_fen(data[field], field) for field in RECONCILED_AMOUNTS
                 if data.get(field) not in (None, "")}
    their_count = data.get("fixmedins_setl_cnt")
    if their_count in (None, ""):
        their_count = None
    elif isinstance(their_count, bool) or not isinstance(their_count, int) or their_count < 0:
        raise Refused("fixmedins_setl_cnt must be a whole number")
    return Reconciliation(first_day=first_day, last_day=last_day, setl_optins=setl_optins, insutype=insutype,
                          their_fen=their_fen, their_count=their_count)


def differences(reconciliation: Reconciliation, our_fen: Mapping[str, int], our_count: int) -> list[str]:
    """What the institution's totals say that the gateway's do not (empty: 对账平)."""
    found = [f"{field}: yours {fen / 100:.2f}, ours {our_fen[field] / 100:.2f}"
             for field, fen in reconciliation.their_fen.items() if fen != our_fen[field]]
    if reconciliation.their_count is not None and reconciliation.their_count != our_count:
        found.append(f"fixmedins_setl_cnt: yours {reconciliation.their_count}, ours {our_count}")
    return found
