"""An insured person's status over time, pure (DOMAIN.md "Family mutual aid": a binding ends by itself when either
party's insurance ends or moves region).

Pooling regions (统筹区, 337 of them) are prefecture-level: GB/T 2260 codes name the province in digits 1-2, the
prefecture in 3-4 and the county or district in 5-6, and a county's insurance is pooled at its prefecture. So
640104 (兴庆区) and 640105 (西夏区) are both in the 银川 pool 640100, while 640200 (石嘴山) is another pool."""

from __future__ import annotations

from typing import Literal

BindingEndReason = Literal["INSURANCE_ENDED", "MOVED_REGION"]


def pooling_in_province(pooling_admdvs: str, province_admdvs: str) -> bool:
    """A six-digit region code inside this node's province: the only pooling codes a node can hold."""
    return len(pooling_admdvs) == 6 and pooling_admdvs.isdigit() and pooling_admdvs[:2] == province_admdvs[:2]


def pooling_region_of(admdvs: str) -> str:
    """The prefecture-level pool a region code belongs to (640104 -> 640100)."""
    return admdvs[:4] + "00"


def binding_end_reason(*, insured_before: bool, insured_after: bool, pooling_before: str,
                       pooling_after: str) -> BindingEndReason | None:
    """Why a change of a person's status ends every binding they are part of, or None when it ends none."""
    if insured_before and not insured_after:
        return "INSURANCE_ENDED"
    if pooling_region_of(pooling_before) != pooling_region_of(pooling_after):
        return "MOVED_REGION"
    return None
