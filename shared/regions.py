"""Region codes (GB/T 2260): six digits, the first two name the province. Clearing and routing are per province,
while institutions and pooling regions carry city codes (510100 成都 is in 510000 四川)."""

from __future__ import annotations

import re

_ADMDVS_SHAPE = re.compile(r"^[0-9]{6}$", re.ASCII)


def is_admdvs(code: object) -> bool:
    return isinstance(code, str) and bool(_ADMDVS_SHAPE.match(code))


def province_of(admdvs: str) -> str:
    """`510100` -> `510000`: the province whose node (and clearing position) a region belongs to."""
    assert is_admdvs(admdvs), f"not a region code: {admdvs!r}"
    return admdvs[:2] + "0000"
