"""Which filing (异地就医备案) covers treatment where (API.md "Filings"; DOMAIN.md: a filing may name a province
or a city). Pure."""

from __future__ import annotations


def covers(filed_admdvs: str, institution_admdvs: str) -> bool:
    """A province code (XX0000) covers the whole province, a city code (XXYY00) the city, else the exact area."""
    if filed_admdvs.endswith("0000"):
        return institution_admdvs[:2] == filed_admdvs[:2]
    if filed_admdvs.endswith("00"):
        return institution_admdvs[:4] == filed_admdvs[:4]
    return institution_admdvs == filed_admdvs
