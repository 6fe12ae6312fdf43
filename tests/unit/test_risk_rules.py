"""The supervision rules (API.md "Supervision"): each fires exactly when its threshold is passed, and operators'
changes are validated (unknown param, bad value, forbidden action → refused, setting unchanged)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.national_hub.domain import risk_rules as r
from services.national_hub.domain import statistics

NOW = datetime(2026, 3, 1, 10, tzinfo=UTC)


def rule(rule_id: str, **params: int) -> r.RuleSetting:
    return r.apply_change(r.default_setting(rule_id), {"params": params} if params else {})


def test_every_rule_has_its_contract_id_params_and_defaults() -> None:
    assert {rule_id: dict(spec.defaults) for rule_id, spec in r.RULES.items()} == {
        "HIGH_FREQUENCY_TRANSFERS": {"max_count": 5, "window_min": 60},
        "NEW_BINDING_LARGE_TRANSFER": {"binding_age_h": 24, "min_amount_fen": 150_000},
        "MANY_GIVERS_ONE_RELATIVE": {"max_givers": 3},
        "LARGE_REMOTE_PAYMENT": {"min_amount_fen": 100_000},
        "INSTITUTION_CLUSTER": {"min_persons": 10, "window_min": 30},
        "SPLIT_PURCHASES": {"max_count": 3, "window_min": 60},
        "DISTANT_PAYMENTS": {"window_min": 60},
    }
    # Only the two transfer rules may hold: a patient at a till is never held.
    assert [rule_id for rule_id, spec in r.RULES.items() if r.HOLD in spec.actions] == [
        "HIGH_FREQUENCY_TRANSFERS", "NEW_BINDING_LARGE_TRANSFER"]
    assert all(r.default_setting(rule_id).action == r.ALERT for rule_id in r.RULES)


@pytest.mark.parametrize(("from_giver", "to_receiver", "fires"),
                         [(5, 1, False), (6, 1, True), (1, 5, False), (1, 6, True), (5, 5, False)])
def test_high_frequency_fires_above_max_count(from_giver: int, to_receiver: int, fires: bool) -> None:
    assert r.high_frequency_transfers(rule(r.HIGH_FREQUENCY_TRANSFERS), from_giver, to_receiver) is fires


@pytest.mark.parametrize(("age", "amount_fen", "fires"), [
    (timedelta(hours=1), 150_000, True), (timedelta(hours=1), 149_999, False),
    (timedelta(hours=24) - timedelta(seconds=1), 150_000, True), (timedelta(hours=24), 150_000, False)])
def test_new_binding_large_transfer(age: timedelta, amount_fen: int, fires: bool) -> None:
    assert r.new_binding_large_transfer(rule(r.NEW_BINDING_LARGE_TRANSFER), NOW - age, NOW, amount_fen) is fires


def test_many_givers_one_relative_fires_above_max_givers() -> None:
    setting = rule(r.MANY_GIVERS_ONE_RELATIVE)
    assert not r.many_givers_one_relative(setting, 3)
    assert r.many_givers_one_relative(setting, 4)


def test_large_remote_payment_only_outside_the_home_province() -> None:
    setting = rule(r.LARGE_REMOTE_PAYMENT)
    assert r.large_remote_payment(setting, "640000", "510000", 100_000)
    assert not r.large_remote_payment(setting, "640000", "510000", 99_999)
    assert not r.large_remote_payment(setting, "640000", "640000", 10_000_000)


def test_institution_cluster_split_purchases_and_distant_payments() -> None:
    cluster = rule(r.INSTITUTION_CLUSTER)
    assert not r.institution_cluster(cluster, 9) and r.institution_cluster(cluster, 10)
    split = rule(r.SPLIT_PURCHASES)
    assert not r.split_purchases(split, 3) and r.split_purchases(split, 4)
    distant = rule(r.DISTANT_PAYMENTS)
    assert not r.distant_payments(distant, ["640000", "640000"])
    assert r.distant_payments(distant, ["640000", "510000"])


def test_changes_apply_field_by_field() -> None:
    changed = r.apply_change(r.default_setting(r.HIGH_FREQUENCY_TRANSFERS),
                             {"action": "hold", "params": {"max_count": 2}})
    assert (changed.action, dict(changed.params), changed.enabled) == ("hold", {"max_count": 2, "window_min": 60},
                                                                       True)
    assert changed.holds and changed.window() == timedelta(minutes=60)
    off = r.apply_change(changed, {"enabled": False})
    assert not off.holds and off.action == "hold"


@pytest.mark.parametrize(("rule_id", "change", "code"), [
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"max_givers": 3}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"window_min": -5}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"window_min": 0}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"max_count": True}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"max_count": 2.5}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": {"max_count": "5"}}, "INVALID_RULE_PARAM"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"params": [1]}, "VALIDATION_ERROR"),
    (r.HIGH_FREQUENCY_TRANSFERS, {"action": "block"}, "INVALID_RULE_ACTION"),
    (r.LARGE_REMOTE_PAYMENT, {"action": "hold"}, "INVALID_RULE_ACTION"),
    (r.LARGE_REMOTE_PAYMENT, {"params": {"min_amount_fen": 10**12 + 1}}, "INVALID_RULE_PARAM"),
    (r.LARGE_REMOTE_PAYMENT, {"enabled": "yes"}, "VALIDATION_ERROR"),
    (r.LARGE_REMOTE_PAYMENT, {"threshold": 1}, "VALIDATION_ERROR"),
])
def test_bad_changes_are_refused(rule_id: str, change: dict[str, object], code: str) -> None:
    with pytest.raises(r.RuleConfigError) as refused:
        r.apply_change(r.default_setting(rule_id), change)
    assert refused.value.code == code


def test_stored_settings_keep_defaults_for_params_they_lack() -> None:
    stored = r.stored_setting(r.SPLIT_PURCHASES, False, "hold", {"max_count": 7})
    assert (stored.enabled, stored.action, dict(stored.params)) == (False, "alert", {"max_count": 7,
                                                                                     "window_min": 60})


def test_holding_rule_is_the_first_that_holds() -> None:
    alert = rule(r.NEW_BINDING_LARGE_TRANSFER)
    hold = r.apply_change(r.default_setting(r.HIGH_FREQUENCY_TRANSFERS), {"action": "hold"})
    assert r.holding_rule([alert]) is None
    assert r.holding_rule([alert, hold]) is hold


@pytest.mark.parametrize(("a", "b", "scope"), [
    ("640100", "640100", "same_pool"), ("640100", "640200", "in_province"), ("640100", "620100", "cross_province"),
    (None, "640100", "cross_province")])
def test_scope_compares_pooling_regions(a: str | None, b: str | None, scope: str) -> None:
    assert statistics.scope_of(a, b) == scope


def test_statistics_totals_and_csv() -> None:
    rows: list[dict[str, Any]] = [
        {"month": "2026-03", "kind": "transfer", "use": "transfer", "from_admdvs": "640000", "to_admdvs": "620000",
         "scope": "cross_province", "person_times": 2, "amount_fen": 30_000},
        {"month": "2026-03", "kind": "wallet_use", "use": "pharmacy", "from_admdvs": "640000",
         "to_admdvs": "640000", "scope": None, "person_times": 1, "amount_fen": 1_250},
    ]
    totals = statistics.totals(rows)
    assert totals["person_times"] == 3 and totals["amount_fen"] == 31_250
    assert totals["totals_by_use"] == {"transfer": {"person_times": 2, "amount_fen": 30_000},
                                       "pharmacy": {"person_times": 1, "amount_fen": 1_250}}
    assert totals["totals_by_scope"] == {"cross_province": {"person_times": 2, "amount_fen": 30_000}}
    csv = statistics.to_csv(rows).splitlines()
    assert csv[0] == "month,kind,use,from_admdvs,to_admdvs,scope,person_times,amount_fen"
    assert csv[2] == "2026-03,wallet_use,pharmacy,640000,640000,,1,1250"
    assert statistics.person_times(-5) == -1 and statistics.person_times(5) == 1
