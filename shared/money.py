"""Money helpers. Inside the federation money is integer fen; yuan exist only at the edges (the NHSA wire,
SMS texts). Floats never touch money: yuan are parsed with Decimal and refused beyond two decimals."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

FEN_PER_YUAN = 100


class InvalidAmount(ValueError):
    """A yuan amount that is not a finite number with at most two decimals."""


def yuan_to_fen(value: object) -> int:
    """Parse a wire yuan amount (number or string) exactly; `12.345` or `NaN` is refused, never rounded."""
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
