"""A province's medical-insurance policy (参保地政策) and the pooled fund's share of a hospital or clinic bill
(API.md "Medical institutions", DOMAIN.md "Seeing a doctor"). Pure: the caller passes the accumulators it read
(and locked) inside the unit of work that will store the result.

A rule per (insutype, setting, hosp_lv): the deductible (起付线: per calendar year for outpatient, per admission
for inpatient), the ratio the fund pays of what is above it, and the annual cap (封顶线) of what the fund pays in
that setting in a year. `unfiled_ratio_cut` lowers the ratio for treatment in another province without an active
filing (异地就医备案) covering it (commonly 10 percentage points: DOMAIN.md).

Fund computation, exactly as API.md states it:
  act_pay_dedc = min(inscp_scp_amt, deductible left)
  ratio        = rule ratio − (unfiled_ratio_cut when cross-province and not filed), not below 0
  hifp_pay     = min(round_half_up((inscp_scp_amt − act_pay_dedc) × ratio), annual cap left for the setting)"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from shared.money import MAX_AMOUNT_FEN

Setting = Literal["outpatient", "inpatient"]
INSUTYPES = ("310", "390")
SETTINGS: tuple[Setting, ...] = ("outpatient", "inpatient")
HOSP_LVS = ("1", "2", "3")
RATIO_EXPONENT = Decimal("0.0001")  # pool_prop_selfpay is numeric(5,4) on the national wire


class PolicyInvalid(ValueError):
    """A policy that cannot be applied: a ratio outside [0, 1], a negative amount, a missing rule."""


def parse_ratio(value: Any, field: str) -> Decimal:
    """A decimal string (or number) in [0, 1] with at most four decimals."""
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise PolicyInvalid(f"{field} must be a decimal string such as \"0.80\"")
    try:
        ratio = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise PolicyInvalid(f"{field} must be a decimal string such as \"0.80\"") from exc
    if not ratio.is_finite() or ratio < 0 or ratio > 1:
        raise PolicyInvalid(f"{field} must be between 0 and 1")
    if ratio != ratio.quantize(RATIO_EXPONENT):
        raise PolicyInvalid(f"{field} has more than four decimals")
    return ratio


@dataclass(frozen=True)
class PolicyRule:
    insutype: str
    setting: Setting
    hosp_lv: str
    deductible_fen: int
    ratio: Decimal
    annual_cap_fen: int

    def __post_init__(self) -> None:
        if self.insutype not in INSUTYPES or self.setting not in SETTINGS or self.hosp_lv not in HOSP_LVS:
            raise PolicyInvalid(f"a rule names insutype 310|390, setting outpatient|inpatient, hosp_lv 1|2|3: {self}")
        if self.deductible_fen < 0 or self.annual_cap_fen < 0:
            raise PolicyInvalid("deductible_fen and annual_cap_fen must not be negative")
        if not Decimal(0) <= self.ratio <= Decimal(1):
            raise PolicyInvalid("ratio must be between 0 and 1")

    @property
    def key(self) -> tuple[str, str, str]:
        return self.insutype, self.setting, self.hosp_lv


@dataclass(frozen=True)
class MedicalPolicy:
    rules: tuple[PolicyRule, ...]
    unfiled_ratio_cut: Decimal

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.unfiled_ratio_cut <= Decimal(1):
            raise PolicyInvalid("unfiled_ratio_cut must be between 0 and 1")
        keys = [rule.key for rule in self.rules]
        if len(set(keys)) != len(keys):
            raise PolicyInvalid("two rules for the same insutype, setting and hosp_lv")

    def rule_for(self, insutype: str, setting: Setting, hosp_lv: str) -> PolicyRule | None:
        for rule in self.rules:
            if rule.key == (insutype, setting, hosp_lv):
                return rule
        return None

    def to_json(self) -> dict[str, Any]:
        """The body of GET /v1/admin/medical-policy (and what PUT takes)."""
        return {"rules": [{"insutype": r.insutype, "setting": r.setting, "hosp_lv": r.hosp_lv,
                           "deductible_fen": r.deductible_fen, "ratio": str(r.ratio),
                           "annual_cap_fen": r.annual_cap_fen}
                          for r in self.rules],
                "unfiled_ratio_cut": str(self.unfiled_ratio_cut)}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> MedicalPolicy:
        rules = body.get("rules")
        if not isinstance(rules, list) or not rules:
            raise PolicyInvalid("rules must list at least one rule")
        parsed = []
        for index, raw in enumerate(rules):
            if not isinstance(raw, dict):
                raise PolicyInvalid(f"rules[{index}] must be an object")
            amounts = {}
            for field in ("deductible_fen", "annual_cap_fen"):
                value = raw.get(field)
                if isinstance(value, bool) or not isinstance(value, int):
                    raise PolicyInvalid(f"rules[{index}].{field} must be a whole number of fen")
                if value < 0 or value > MAX_AMOUNT_FEN:
                    raise PolicyInvalid(f"rules[{index}].{field} must be from 0 to {MAX_AMOUNT_FEN} fen")
                amounts[field] = value
            parsed.append(PolicyRule(insutype=str(raw.get("insutype")), setting=raw.get("setting"),  # type: ignore[arg-type]
                                     hosp_lv=str(raw.get("hosp_lv")),
                                     ratio=parse_ratio(raw.get("ratio"), f"rules[{index}].ratio"), **amounts))
        return cls(tuple(parsed), parse_ratio(body.get("unfiled_ratio_cut", "0"), "unfiled_ratio_cut"))


def round_half_up(amount: Decimal) -> int:
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class FundShare:
    act_pay_dedc_fen: int  # the part of inscp_scp_amt the deductible took this time
    ratio: Decimal  # the ratio applied (pool_prop_selfpay)
    hifp_pay_fen: int  # what the pooled fund pays (fund_pay_sumamt)


def fund_share(inscp_fen: int, rule: PolicyRule, *, deductible_used_fen: int, cap_used_fen: int,
               ratio_cut: Decimal) -> FundShare:
    """The pooled fund's share of `inscp_fen` (the policy-eligible amount) under `rule`, given how much of the
    deductible (this year for outpatient, this admission for inpatient) and of the setting's annual cap is used."""
    assert inscp_fen >= 0 and deductible_used_fen >= 0 and cap_used_fen >= 0, (inscp_fen, deductible_used_fen,
                                                                                cap_used_fen)
    deductible_left_fen = max(0, rule.deductible_fen - deductible_used_fen)
    act_pay_dedc_fen = min(inscp_fen, deductible_left_fen)
    ratio = max(Decimal(0), rule.ratio - ratio_cut)
    cap_left_fen = max(0, rule.annual_cap_fen - cap_used_fen)
    hifp_pay_fen = min(round_half_up((inscp_fen - act_pay_dedc_fen) * ratio), cap_left_fen)
    assert 0 <= hifp_pay_fen <= inscp_fen - act_pay_dedc_fen, hifp_pay_fen
    return FundShare(act_pay_dedc_fen, ratio, hifp_pay_fen)


# ------------------------------------------------------------------------------------------------ defaults
#
# Each node starts with a realistic default for its province (API.md: "Each node starts with a documented,
# realistic default"). Sources: reviews/hospital.md §5.2, a compiled dataset of municipal rules (石家庄, 兰州,
# 石嘴山, 铜川) marked [low] there; for Sichuan and Fujian, where it has no entry, values in the same national
# range (deductibles of a few hundred yuan rising with the level, ratios 60–95 %). Deductibles and caps in yuan
# below, stored in fen. An operator replaces them with PUT /v1/admin/medical-policy.
# (insutype, setting) -> ((deductible_yuan, ratio) for hosp_lv 1, 2, 3), annual_cap_yuan

_Table = dict[tuple[str, str], tuple[tuple[tuple[int, str], tuple[int, str], tuple[int, str]], int]]

DEFAULT_TABLES: dict[str, _Table] = {
    # 宁夏 (石嘴山 640200): employees 一级 200/92 %, 二级 400/88 %, 三级 800/85 %, cap 500,000 (with 大额);
    # outpatient deductible 0/100/300 per year, 70/65/60 %, cap 4,000. Residents 100/85 %, 300/75 %, 700/60 %,
    # cap 150,000; outpatient 50 %, cap 300.
    "640000": {
        ("310", "inpatient"): (((200, "0.92"), (400, "0.88"), (800, "0.85")), 500_000),
        ("310", "outpatient"): (((0, "0.70"), (100, "0.65"), (300, "0.60")), 4_000),
        ("390", "inpatient"): (((100, "0.85"), (300, "0.75"), (700, "0.60")), 150_000),
        ("390", "outpatient"): (((0, "0.50"), (0, "0.50"), (0, "0.50")), 300),
    },
    # 甘肃 (兰州 620100): employees 200/92 %, 400/90 %, 600/86 %, cap 500,000; outpatient deductible 200 per year,
    # 65/60/55 %, cap 2,500. Residents 200/85 %, 400/80 %, 600/70 %, cap 150,000; outpatient 70/60/50 %, cap 130.
    "620000": {
        ("310", "inpatient"): (((200, "0.92"), (400, "0.90"), (600, "0.86")), 500_000),
        ("310", "outpatient"): (((200, "0.65"), (200, "0.60"), (200, "0.55")), 2_500),
        ("390", "inpatient"): (((200, "0.85"), (400, "0.80"), (600, "0.70")), 150_000),
        ("390", "outpatient"): (((0, "0.70"), (0, "0.60"), (0, "0.50")), 130),
    },
    # 陕西 (铜川 610200): employees 450/91 %, 550/90 %, 650/89 %, basic cap 95,000; outpatient deductible 200,
    # 70/60/50 %, cap 1,000. Residents (no entry): 300/85 %, 600/75 %, 900/60 %, cap 150,000; outpatient 50 %,
    # cap 400.
    "610000": {
        ("310", "inpatient"): (((450, "0.91"), (550, "0.90"), (650, "0.89")), 95_000),
        ("310", "outpatient"): (((200, "0.70"), (200, "0.60"), (200, "0.50")), 1_000),
        ("390", "inpatient"): (((300, "0.85"), (600, "0.75"), (900, "0.60")), 150_000),
        ("390", "outpatient"): (((0, "0.50"), (0, "0.50"), (0, "0.50")), 400),
    },
    # 四川 (no entry; 德阳/成都 range): employees 200/92 %, 500/88 %, 800/85 %, cap 400,000; outpatient 100,
    # 70/60/50 %, cap 3,000. Residents 200/85 %, 500/75 %, 1,000/60 %, cap 200,000; outpatient 50 %, cap 400.
    "510000": {
        ("310", "inpatient"): (((200, "0.92"), (500, "0.88"), (800, "0.85")), 400_000),
        ("310", "outpatient"): (((100, "0.70"), (100, "0.60"), (100, "0.50")), 3_000),
        ("390", "inpatient"): (((200, "0.85"), (500, "0.75"), (1_000, "0.60")), 200_000),
        ("390", "outpatient"): (((0, "0.50"), (0, "0.50"), (0, "0.50")), 400),
    },
    # 福建 (no entry; 厦门 range): employees 100/95 %, 300/92 %, 600/90 %, cap 450,000; outpatient 200, 75/70/65 %,
    # cap 5,000. Residents 100/90 %, 400/80 %, 800/65 %, cap 200,000; outpatient 60/55/50 %, cap 500.
    "350000": {
        ("310", "inpatient"): (((100, "0.95"), (300, "0.92"), (600, "0.90")), 450_000),
        ("310", "outpatient"): (((200, "0.75"), (200, "0.70"), (200, "0.65")), 5_000),
        ("390", "inpatient"): (((100, "0.90"), (400, "0.80"), (800, "0.65")), 200_000),
        ("390", "outpatient"): (((0, "0.60"), (0, "0.55"), (0, "0.50")), 500),
    },
    # 河北 (石家庄 130100): employees 一级 100/98 %, 二级 500/90 %, 市属三级 600/85 %, cap 350,000; outpatient 100
    # per year, 60 %, cap 3,500. Residents 200/90 %, 800/75 %, 市属三级 1,000/65 %, cap 200,000; outpatient
    # 基层 90 % cap 400, others 50 % cap 200 (one annual cap per setting: the rule of the institution applies).
    "130000": {
        ("310", "inpatient"): (((100, "0.98"), (500, "0.90"), (600, "0.85")), 350_000),
        ("310", "outpatient"): (((100, "0.60"), (100, "0.60"), (100, "0.60")), 3_500),
        ("390", "inpatient"): (((200, "0.90"), (800, "0.75"), (1_000, "0.65")), 200_000),
        ("390", "outpatient"): (((0, "0.90"), (0, "0.50"), (0, "0.50")), 400),
    },
}
# Without a filing covering the place of treatment, cross-province treatment is paid 10 points lower.
DEFAULT_UNFILED_RATIO_CUT = Decimal("0.10")
# A province not listed above starts with the national middle of the ranges: Sichuan's table.
FALLBACK_TABLE = "510000"


def default_policy(admdvs: str) -> MedicalPolicy:
    """The policy a node of province `admdvs` starts with."""
    table = DEFAULT_TABLES.get(admdvs[:2] + "0000", DEFAULT_TABLES[FALLBACK_TABLE])
    rules = []
    for (insutype, setting), (levels, cap_yuan) in table.items():
        for hosp_lv, (deductible_yuan, ratio) in zip(HOSP_LVS, levels, strict=True):
            rules.append(PolicyRule(insutype, setting, hosp_lv, deductible_yuan * 100, Decimal(ratio),  # type: ignore[arg-type]
                                    cap_yuan * 100))
    return MedicalPolicy(tuple(rules), DEFAULT_UNFILED_RATIO_CUT)
