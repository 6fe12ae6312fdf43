from datetime import UTC, datetime, timedelta

import pytest

from services.national_hub.domain import risk_rules
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


@pytest.mark.parametrize(("age_h", "amount_fen", "alert"), [(1, 150_000, True), (1, 149_999, False),
                                                             (25, 200_000, False)])
def test_new_binding_drain(age_h: int, amount_fen: int, alert: bool) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    policy = risk_rules.RiskPolicy()
    assert risk_rules.new_binding_drain(policy, now - timedelta(hours=age_h), now, amount_fen) is alert


def test_rapid_transfers_and_large_remote_purchases() -> None:
    policy = risk_rules.RiskPolicy()
    assert risk_rules.rapid_transfers(policy, 5) and not risk_rules.rapid_transfers(policy, 4)
    assert risk_rules.large_remote_purchase(policy, 100_000)
    assert not risk_rules.large_remote_purchase(policy, 99_999)
