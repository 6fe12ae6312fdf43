"""Fee lines of a hospital or clinic (2204 `input.feedetail`, 2301 `input.feedetail`) and their split by the
catalogue of the province of treatment (就医地目录; API.md "Medical institutions", "Line split"). Pure.

Per line, amounts in fen, `amount` = det_item_fee_sumamt, which must be cnt × pric to the fen:
- not in the catalogue, daily goods, or 丙类 (chrgitm_lv 03): fulamt_ownpay_amt = amount;
- otherwise overlmt_amt = max(0, amount − cnt × pric_uplmt_amt) (no ceiling: 0), and of the rest r:
  乙类 (02) preselfpay_amt = round_half_up(r × selfpay_prop), inscp_scp_amt = r − preselfpay_amt;
  甲类 (01) inscp_scp_amt = r.
A refund line (2301 only) has a negative cnt and amount and names the line it refunds in init_feedetl_sn; it
is split as its positive mirror, negated, so a full refund takes back exactly what the line put in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from services.pharmacy_gateway.domain.wire import MAX_CNT, Refused, line_fen, text
from shared.money import InvalidAmount, is_plain_decimal, yuan_to_fen

CHRGITM_LVS = {"01": "甲类", "02": "乙类", "03": "丙类"}
MAX_FEE_LINES = 500  # per message (an inpatient day's lines come in batches)
_CNT_EXPONENT = Decimal("0.0001")


@dataclass(frozen=True)
class CatalogueEntry:
    """One med_list_codg as the catalogue of a place of treatment lists it (or the national one)."""

    category: str  # drug | device | service | daily_goods
    chrgitm_lv: str = "01"
    selfpay_prop: Decimal = Decimal(0)
    pric_uplmt_fen: int | None = None


@dataclass(frozen=True)
class FeeLine:
    feedetl_sn: str
    init_feedetl_sn: str
    chrg_bchno: str
    med_list_codg: str
    medins_list_codg: str
    amount_fen: int  # negative for a refund line
    cnt: Decimal
    price_fen: int


@dataclass(frozen=True)
class SplitLine:
    line: FeeLine
    fulamt_fen: int
    overlmt_fen: int
    preselfpay_fen: int
    inscp_fen: int
    chrgitm_lv: str | None  # None: not in the catalogue
    selfpay_prop: Decimal
    pric_uplmt_fen: int | None
    daily_goods: bool

    @property
    def parts(self) -> tuple[int, int, int, int]:
        """(fulamt_ownpay_amt, overlmt_amt, preselfpay_amt, inscp_scp_amt) in fen."""
        return self.fulamt_fen, self.overlmt_fen, self.preselfpay_fen, self.inscp_fen


def signed_amount_fen(value: Any, field: str) -> int:
    if value is None or value == "":
        raise Refused(f"{field} is required")
    try:
        return yuan_to_fen(value)
    except InvalidAmount as exc:
        raise Refused(f"{field}: {exc}") from exc


def signed_count(value: Any, field: str) -> Decimal:
    """A non-zero quantity with at most four decimals, |cnt| below MAX_CNT; negative only for refund lines."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise Refused(f"{field} must be a number")
    text_value = str(value).strip()
    try:
        quantity = Decimal(text_value)
    except InvalidOperation as exc:
        raise Refused(f"{field} must be a number") from exc
    if not quantity.is_finite() or quantity == 0 or not is_plain_decimal(text_value):
        raise Refused(f"{field} must be a plain non-zero decimal number")
    if abs(quantity) >= MAX_CNT:
        raise Refused(f"{field} must be below {MAX_CNT}")
    if quantity != quantity.quantize(_CNT_EXPONENT):
        raise Refused(f"{field} has more than four decimals")
    return quantity


def parse_fee_lines(feedetail: Any, *, mdtrt_id: str, psn_no: str, batched: bool,
                    refunds_allowed: bool) -> tuple[FeeLine, ...]:
    """2204 (batched: every line names its chrg_bchno) or 2301 (refund lines allowed). Every line must be of
    the message's visit and person."""
    if not isinstance(feedetail, list) or not feedetail:
        raise Refused("feedetail must list the fee lines")
    if len(feedetail) > MAX_FEE_LINES:
        raise Refused(f"feedetail has more than {MAX_FEE_LINES} lines; send them in several messages")
    lines: list[FeeLine] = []
    for index, raw in enumerate(feedetail):
        where = f"feedetail[{index}]"
        if not isinstance(raw, dict):
            raise Refused(f"{where} must be an object")
        if text(raw.get("mdtrt_id"), f"{where}.mdtrt_id", max_length=40) != mdtrt_id:
            raise Refused(f"{where}.mdtrt_id is not the visit of this message")
        if text(raw.get("psn_no"), f"{where}.psn_no", max_length=32) != psn_no:
            raise Refused(f"{where}.psn_no is not the person of this visit")
        cnt = signed_count(raw.get("cnt"), f"{where}.cnt")
        price_fen = signed_amount_fen(raw.get("pric"), f"{where}.pric")
        if price_fen < 0:
            raise Refused(f"{where}.pric must not be negative")
        amount_fen = signed_amount_fen(raw.get("det_item_fee_sumamt"), f"{where}.det_item_fee_sumamt")
        init_sn = text(raw.get("init_feedetl_sn"), f"{where}.init_feedetl_sn", max_length=30, required=False)
        if cnt < 0:
            if not refunds_allowed:
                raise Refused(f"{where}.cnt must be positive (refund lines are for 2301)")
            if not init_sn:
                raise Refused(f"{where}: a refund line (negative cnt) names the refunded line in init_feedetl_sn")
        elif init_sn:
            raise Refused(f"{where}: init_feedetl_sn is only for refund lines (negative cnt)")
        expected_fen = -line_fen(-cnt, price_fen) if cnt < 0 else line_fen(cnt, price_fen)
        if expected_fen != amount_fen:
            raise Refused(f"{where}: cnt × pric is not det_item_fee_sumamt")
        lines.append(FeeLine(
            feedetl_sn=text(raw.get("feedetl_sn"), f"{where}.feedetl_sn", max_length=30),
            init_feedetl_sn=init_sn,
            chrg_bchno=text(raw.get("chrg_bchno"), f"{where}.chrg_bchno", max_length=30) if batched else "",
            med_list_codg=text(raw.get("med_list_codg"), f"{where}.med_list_codg", max_length=50),
            medins_list_codg=text(raw.get("medins_list_codg"), f"{where}.medins_list_codg", max_length=50,
                                  required=False),
            amount_fen=amount_fen, cnt=cnt, price_fen=price_fen))
    if len({line.feedetl_sn for line in lines}) != len(lines):
        raise Refused("feedetail repeats a feedetl_sn")
    if batched and any(line.chrg_bchno == "0000" for line in lines):
        raise Refused("chrg_bchno 0000 means every batch (2205); name the batch of these lines")
    return tuple(lines)


def _round_half_up(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def split_line(line: FeeLine, entry: CatalogueEntry | None) -> SplitLine:
    sign = -1 if line.amount_fen < 0 else 1
    amount_fen, cnt = sign * line.amount_fen, sign * line.cnt
    daily_goods = entry is not None and entry.category == "daily_goods"
    if entry is None or daily_goods or entry.chrgitm_lv == "03":
        parts = (amount_fen, 0, 0, 0)
    else:
        overlmt_fen = 0 if entry.pric_uplmt_fen is None else max(0, amount_fen - line_fen(cnt, entry.pric_uplmt_fen))
        rest_fen = amount_fen - overlmt_fen
        preselfpay_fen = _round_half_up(rest_fen * entry.selfpay_prop) if entry.chrgitm_lv == "02" else 0
        parts = (0, overlmt_fen, preselfpay_fen, rest_fen - preselfpay_fen)
    fulamt, overlmt, preselfpay, inscp = (sign * part for part in parts)
    assert fulamt + overlmt + preselfpay + inscp == line.amount_fen
    return SplitLine(line, fulamt, overlmt, preselfpay, inscp, None if entry is None else entry.chrgitm_lv,
                     Decimal(0) if entry is None or entry.chrgitm_lv != "02" else entry.selfpay_prop,
                     None if entry is None else entry.pric_uplmt_fen, daily_goods)


def lookup(code: str, treatment_admdvs: str, provincial: Mapping[tuple[str, str], CatalogueEntry],
           national: Mapping[str, CatalogueEntry]) -> CatalogueEntry | None:
    """The treatment province's entry, else the national one, else None (not in the catalogue)."""
    return provincial.get((treatment_admdvs[:2] + "0000", code)) or national.get(code)
