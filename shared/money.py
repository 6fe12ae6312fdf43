"""Money helpers. Inside the federation money is integer fen; yuan exist only at the edges (the NHSA wire,
SMS texts). Floats never touch money: yuan are parsed with Decimal and refused beyond two decimals."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

FEN_PER_YUAN = 100
# The largest amount any citizen, admin or operator call may name (API.md "Conventions"): 10^12 fen, ten billion
# yuan, beyond any real account or bill, and far inside what stays exact everywhere money travels (2^53 fen as a
# JSON number of yuan, 2^63 fen in a BIGINT column, sums of many such amounts included).
MAX_AMOUNT_FEN = 10**12
# The same bound on the national wire, which speaks yuan.
MAX_WIRE_YUAN = Decimal(MAX_AMOUNT_FEN) / FEN_PER_YUAN
# What a wire amount may look like: plain decimal digits. No exponent ("1e30" would make a 31-digit number out of
# four characters), no digit separators (Decimal would take "1_000"), no NaN or Infinity.
_PLAIN_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$", re.ASCII)


class InvalidAmount(ValueError):
    """A yuan amount that is not a plain number with at most two decimals, or beyond MAX_WIRE_YUAN."""


def is_plain_decimal(text: str) -> bool:
    """Digits with an optional sign and decimal point: how the national wire writes numbers."""
    return _PLAIN_DECIMAL.match(text) is not None


def whole_number(value: object) -> object:
    """A JSON number without a fraction (`500.0`) as the integer it is (JSON Schema's `integer` admits it, and
    it is the same amount); anything else as it came, for the caller's own check."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def above_max_amount(amount_fen: object, field: str) -> str | None:
    """Why an integer amount of fen beyond MAX_AMOUNT_FEN is refused, else None. What is not an integer is left
    to the use case's own check, which refuses it with its own code."""
    if isinstance(amount_fen, int) and not isinstance(amount_fen, bool) and amount_fen > MAX_AMOUNT_FEN:
        return f"{field} must be at most {MAX_AMOUNT_FEN} fen"
    return None


def yuan_to_fen(value: object) -> int:
    """Parse a wire yuan amount (number or string) exactly; `12.345`, `NaN`, `1e3` or more than MAX_WIRE_YUAN
    either way is refused, never rounded."""
    if isinstance(value, bool):
        raise InvalidAmount("a boolean is not an amount")
    if isinstance(value, float):
        # JSON numbers arrive as floats from most parsers; repr() gives the shortest text that round-trips,
        # which is exactly what the sender wrote (e.g. 12.3 -> "12.3").
        text = repr(value)
    elif isinstance(value, int | str | Decimal):
        text = str(value).strip()
    else:
        raise InvalidAmount(f"not an amount: {type(value).__name__}")
    try:
        amount = Decimal(text)
    except InvalidOperation as exc:
        raise InvalidAmount(f"not a number: {text!r}") from exc
    if not amount.is_finite():
        raise InvalidAmount(f"not a finite amount: {text!r}")
    if not is_plain_decimal(text):
        raise InvalidAmount(f"not a plain decimal number (no exponent, no separators): {text!r}")
    if abs(amount) > MAX_WIRE_YUAN:
        raise InvalidAmount(f"beyond the bound of {MAX_WIRE_YUAN} yuan")
    fen = amount * FEN_PER_YUAN
    if fen != fen.to_integral_value():
        raise InvalidAmount(f"more than two decimals: {text!r}")
    return int(fen)


def fen_to_yuan(amount_fen: int) -> Decimal:
    """Fen as a two-decimal Decimal for the NHSA wire (decimal(16,2))."""
    return (Decimal(amount_fen) / FEN_PER_YUAN).quantize(Decimal("0.01"))


def yuan_text(amount_fen: int) -> str:
    """Yuan as people read it in a notice: whole yuan without decimals (500), otherwise two decimals (12.30)."""
    if amount_fen % FEN_PER_YUAN == 0:
        return str(amount_fen // FEN_PER_YUAN)
    return f"{fen_to_yuan(amount_fen):.2f}"
