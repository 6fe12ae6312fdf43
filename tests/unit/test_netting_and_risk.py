"""Netting of inter-province obligations (the risk rules' tests are in test_risk_rules.py)."""

from services.national_hub.domain.netting import Obligation, PairPosition, net_positions


def test_net_positions_sum_to_zero_and_net_each_pair_both_ways() -> None:
    per_province, pairs = net_positions([
        Obligation("640000", "620000", 50_000),  # Ningxia's transfer credited in Gansu
        Obligation("620000", "640000", 20_000),  # the other way
        Obligation("640000", "510000", 5_700),  # a Ningxia payer at a Chengdu pharmacy
        Obligation("640000", "510000", -5_700),  # ... cancelled
        Obligation("640000", "640000", 999),  # within one province: nothing to clear
    ])
    assert per_province == {"510000": 0, "620000": 30_000, "640000": -30_000}
    assert sum(per_province.values()) == 0
    assert pairs == [PairPosition("640000", "620000", 30_000)]


def test_nothing_to_net() -> None:
    assert net_positions([]) == ({}, [])
