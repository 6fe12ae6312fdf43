"""A pharmacy bill (2101/2102 `input.data` + `input.drugdetail`) and which of it accounts may pay.

The parts must add up exactly: each line's det_item_fee_sumamt is cnt × pric (rounded to the fen, as a till
rounds a line), and the lines sum to medfee_sumamt; anything else is refused, because a bill whose parts
disagree cannot be split honestly. Only items the catalogue lists as drug, device or service are eligible for
account payment (DOMAIN.md); daily goods, and anything the catalogue does not know, are cash. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.pharmacy_gateway.domain.wire import Refused, amount_fen, count, line_fen, text

CATEGORIES = ("drug", "device", "service", "daily_goods")
ELIGIBLE_CATEGORIES = frozenset({"drug", "device", "service"})
MAX_LINES = 200


def is_eligible(category: str | None) -> bool:
    return category in ELIGIBLE_CATEGORIES


@dataclass(frozen=True)
class BillLine:
    feedetl_sn: str
    med_list_codg: str
    medins_list_codg: str
    fee_fen: int
    cnt: Decimal
    price_fen: int


@dataclass(frozen=True)
class Bill:
    medfee_fen: int
    lines: tuple[BillLine, ...]


@dataclass(frozen=True)
class PricedLine:
    line: BillLine
    eligible: bool


@dataclass(frozen=True)
class BillSplit:
    """The bill seen through the catalogue: `eligible_fen` may be paid from accounts (inscp_scp_amt), the rest
    is the full self-paid amount (fulamt_ownpay_amt)."""

    medfee_fen: int
    eligible_fen: int
    lines: tuple[PricedLine, ...]

    @property
    def self_pay_fen(self) -> int:
        return self.medfee_fen - self.eligible_fen


def parse_bill(medfee_sumamt: Any, drugdetail: Any) -> Bill:
    medfee_fen = amount_fen(medfee_sumamt, "medfee_sumamt")
    if medfee_fen == 0:
        raise Refused("medfee_sumamt must be more than 0")
    if not isinstance(drugdetail, list) or not drugdetail:
        raise Refused("drugdetail must list the bill's items")
    if len(drugdetail) > MAX_LINES:
        raise Refused(f"drugdetail has more than {MAX_LINES} items")
    lines: list[BillLine] = []
    for index, raw in enumerate(drugdetail):
        where = f"drugdetail[{index}]"
        if not isinstance(raw, dict):
            raise Refused(f"{where} must be an object")
        line = BillLine(
            feedetl_sn=text(raw.get("feedetl_sn"), f"{where}.feedetl_sn", max_length=30),
            med_list_codg=text(raw.get("med_list_codg"), f"{where}.med_list_codg", max_length=50),
            medins_list_codg=text(raw.get("medins_list_codg"), f"{where}.medins_list_codg", max_length=50,
                                  required=False),
            fee_fen=amount_fen(raw.get("det_item_fee_sumamt"), f"{where}.det_item_fee_sumamt"),
            cnt=count(raw.get("cnt"), f"{where}.cnt"),
            price_fen=amount_fen(raw.get("pric"), f"{where}.pric"),
        )
        if line_fen(line.cnt, line.price_fen) != line.fee_fen:
            raise Refused(f"{where}: cnt × pric is not det_item_fee_sumamt")
        lines.append(line)
    if len({line.feedetl_sn for line in lines}) != len(lines):
        raise Refused("drugdetail repeats a feedetl_sn")
    if sum(line.fee_fen for line in lines) != medfee_fen:
        raise Refused("the items' det_item_fee_sumamt do not add up to medfee_sumamt")
    return Bill(medfee_fen, tuple(lines))


def split_bill(bill: Bill, category_of: Mapping[str, str]) -> BillSplit:
    priced = tuple(PricedLine(line, is_eligible(category_of.get(line.med_list_codg))) for line in bill.lines)
    eligible_fen = sum(p.line.fee_fen for p in priced if p.eligible)
    return BillSplit(bill.medfee_fen, eligible_fen, priced)
