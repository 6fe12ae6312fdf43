"""The national interface's wire formats: msgid, inf_refmsgid, times, and yuan amounts (at most two decimals,
parsed exactly with Decimal, integer fen inside). Pure; a refusal is a `Refused` whose text becomes err_msg."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from shared.clock import SHANGHAI
from shared.money import InvalidAmount, fen_to_yuan, is_plain_decimal, yuan_to_fen

# Where every message of the interface is POSTed, whatever its infno.
CALL_SERVICE_PATH = "/fsi/api/rsfComIfsService/callService"
FIXMEDINS_CODE_SHAPE = re.compile(r"^[A-Z0-9]{12}$", re.ASCII)
_MSGID_SHAPE = re.compile(r"^([A-Z0-9]{12})([0-9]{14})([0-9]{4})$", re.ASCII)
_MSGID_TIME = "%Y%m%d%H%M%S"
_WIRE_TIME = "%Y-%m-%d %H:%M:%S"
MSGID_LENGTH = 30
REF_SERIAL_DIGITS = 10
# Counts are decimal(16,4) on the national wire (half a box of tablets is a count): below 10^12.
_CNT_EXPONENT = Decimal("0.0001")
MAX_CNT = Decimal(10**12)


class Refused(ValueError):
    """Bad input or a refused operation: infcode -1 with this err_msg, nothing done."""


def check_msgid(msgid: Any, fixmedins_code: str, field: str = "msgid") -> str:
    """30 characters: the sender's fixmedins_code (12), yyyyMMddHHmmss (14), a sequence number (4)."""
    if not isinstance(msgid, str) or len(msgid) != MSGID_LENGTH:
        length = len(msgid) if isinstance(msgid, str) else 0
        raise Refused(f"{field} must be 30 characters (fixmedins_code 12 + yyyyMMddHHmmss 14 + seq 4), "
                      f"got {length}")
    match = _MSGID_SHAPE.match(msgid)
    if not match:
        raise Refused(f"{field} must be fixmedins_code (12 upper-case letters or digits) + 18 digits")
    if match.group(1) != fixmedins_code:
        raise Refused(f"{field} must start with your fixmedins_code {fixmedins_code}")
    try:
        datetime.strptime(match.group(2), _MSGID_TIME)
    except ValueError as exc:
        raise Refused(f"{field} characters 13-26 must be a time yyyyMMddHHmmss") from exc
    return msgid


def ref_msgid(receiver_admdvs: str, now: datetime, serial: int) -> str:
    """inf_refmsgid: the receiver's admdvs (6) + yyyyMMddHHmmss (14) + a serial (10)."""
    return f"{receiver_admdvs}{now.astimezone(SHANGHAI).strftime(_MSGID_TIME)}{serial % 10**REF_SERIAL_DIGITS:010d}"


def wire_time(moment: datetime) -> str:
    """`yyyy-MM-dd HH:mm:ss`, Asia/Shanghai, as the national interface writes times."""
    return moment.astimezone(SHANGHAI).strftime(_WIRE_TIME)


def parse_wire_time(value: Any, field: str) -> datetime:
    try:
        return datetime.strptime(str(value), _WIRE_TIME).replace(tzinfo=SHANGHAI)
    except ValueError as exc:
        raise Refused(f"{field} must be a time yyyy-MM-dd HH:mm:ss") from exc


def parse_date(value: Any, field: str) -> date:
    if isinstance(value, str) and len(value) == len("yyyy-MM-dd"):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise Refused(f"{field} must be a date yyyy-MM-dd")


def amount_fen(value: Any, field: str) -> int:
    """A yuan amount from the wire, exactly: at most two decimals and not negative, else refused."""
    if value is None or value == "":
        raise Refused(f"{field} is required")
    try:
        fen = yuan_to_fen(value)
    except InvalidAmount as exc:
        raise Refused(f"{field}: {exc}") from exc
    if fen < 0:
        raise Refused(f"{field} must not be negative")
    return fen


def count(value: Any, field: str) -> Decimal:
    """A positive quantity below MAX_CNT with at most four decimals, written as plain digits."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise Refused(f"{field} must be a number")
    text_value = str(value).strip()
    try:
        quantity = Decimal(text_value)
    except InvalidOperation as exc:
        raise Refused(f"{field} must be a number") from exc
    if not quantity.is_finite() or quantity <= 0:
        raise Refused(f"{field} must be a positive number")
    if not is_plain_decimal(text_value):
        raise Refused(f"{field} must be a plain decimal number (no exponent, no separators)")
    if quantity >= MAX_CNT:
        raise Refused(f"{field} must be below {MAX_CNT}")
    if quantity != quantity.quantize(_CNT_EXPONENT):
        raise Refused(f"{field} has more than four decimals")
    return quantity


def line_fen(quantity: Decimal, price_fen: int) -> int:
    """cnt × pric, rounded half up to the fen as a till rounds each line."""
    return int((quantity * price_fen).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def yuan(amount_fen: int) -> float:
    """Fen as a JSON number of yuan. Exact on the wire: every value with at most two decimals below 2^53 fen has
    a float whose shortest repr (what the JSON encoder writes) is that decimal, e.g. 1230 fen -> 12.3."""
    return float(fen_to_yuan(amount_fen))


def text(value: Any, field: str, *, max_length: int, required: bool = True) -> str:
    if value is None or value == "":
        if required:
            raise Refused(f"{field} is required")
        return ""
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise Refused(f"{field} must be a string")
    result = str(value).strip()
    if len(result) > max_length:
        raise Refused(f"{field} is longer than {max_length} characters")
    return result
