"""Supervision rules (../shared/API.md "Supervision"; ../shared/reviews/ops_console.md §2): the experts' "对异常交易
(如短时间内高频转账、大额异地购药)进行精准预警". Pure: the hub gathers the facts (counts within a window, amounts,
provinces) and a rule only says whether it fires. Ids and params are fixed by the contract; operators change
values, `enabled` and `action` at run time (`PUT /v1/ops/risk-rules/{rule_id}`), validated here.

Every threshold is a project choice (no published 共济 thresholds exist, ops_console.md §5); "more than" and
"at least" follow API.md word for word, and the unit tests pin each boundary."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.money import MAX_AMOUNT_FEN

ALERT = "alert"
HOLD = "hold"

HIGH_FREQUENCY_TRANSFERS = "HIGH_FREQUENCY_TRANSFERS"
NEW_BINDING_LARGE_TRANSFER = "NEW_BINDING_LARGE_TRANSFER"
MANY_GIVERS_ONE_RELATIVE = "MANY_GIVERS_ONE_RELATIVE"
LARGE_REMOTE_PAYMENT = "LARGE_REMOTE_PAYMENT"
INSTITUTION_CLUSTER = "INSTITUTION_CLUSTER"
SPLIT_PURCHASES = "SPLIT_PURCHASES"
DISTANT_PAYMENTS = "DISTANT_PAYMENTS"

# Bounds of each param (inclusive): a window is at least a minute and at most a year; counts are positive.
_MINUTES_PER_YEAR = 366 * 24 * 60
_BOUNDS: dict[str, tuple[int, int]] = {
    "max_count": (1, 1_000_000),
    "window_min": (1, _MINUTES_PER_YEAR),
    "binding_age_h": (1, 366 * 24),
    "min_amount_fen": (1, MAX_AMOUNT_FEN),
    "max_givers": (1, 1_000),
    "min_persons": (2, 1_000_000),
}


@dataclass(frozen=True)
class RuleSpec:
    rule_id: str
    defaults: Mapping[str, int]
    actions: tuple[str, ...]  # what an operator may choose: settlements are never held (a patient waits)
    description: str


RULES: dict[str, RuleSpec] = {spec.rule_id: spec for spec in (
    RuleSpec(HIGH_FREQUENCY_TRANSFERS, {"max_count": 5, "window_min": 60}, (ALERT, HOLD),
             "短时间内高频转账: a transfer that makes more than max_count from one giver, or to one receiver, "
             "within window_min minutes"),
    RuleSpec(NEW_BINDING_LARGE_TRANSFER, {"binding_age_h": 24, "min_amount_fen": 150_000}, (ALERT, HOLD),
             "新绑定即大额: a transfer of at least min_amount_fen on a binding younger than binding_age_h hours"),
    RuleSpec(MANY_GIVERS_ONE_RELATIVE, {"max_givers": 3}, (ALERT,),
             "虚假亲属: a binding that makes one person the relative of more than max_givers active bindings"),
    RuleSpec(LARGE_REMOTE_PAYMENT, {"min_amount_fen": 100_000}, (ALERT,),
             "大额异地购药: a settlement outside the payer's home province with acct_pay + acct_mulaid_pay of "
             "at least min_amount_fen"),
    RuleSpec(INSTITUTION_CLUSTER, {"min_persons": 10, "window_min": 30}, (ALERT,),
             "聚集性购药: at least min_persons distinct payers spending wallet or quota money at one institution "
             "within window_min minutes"),
    RuleSpec(SPLIT_PURCHASES, {"max_count": 3, "window_min": 60}, (ALERT,),
             "分解购药: more than max_count settlements of one person at one institution within window_min "
             "minutes"),
    RuleSpec(DISTANT_PAYMENTS, {"window_min": 60}, (ALERT,),
             "冒名/借卡: one person's settlements in two provinces within window_min minutes"),
)}


@dataclass(frozen=True)
class RuleSetting:
    rule_id: str
    enabled: bool
    action: str
    params: Mapping[str, int] = field(default_factory=dict)

    def param(self, name: str) -> int:
        return int(self.params[name])

    def window(self) -> timedelta:
        return timedelta(minutes=self.param("window_min"))

    @property
    def holds(self) -> bool:
        return self.enabled and self.action == HOLD


class RuleConfigError(ValueError):
    """A change an operator asked for that the rule does not take (API: 422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def default_setting(rule_id: str) -> RuleSetting:
    spec = RULES[rule_id]
    return RuleSetting(rule_id, True, ALERT, dict(spec.defaults))


def stored_setting(rule_id: str, enabled: bool, action: str, params: Mapping[str, Any]) -> RuleSetting:
    """A setting read back from storage: params it does not name keep their defaults (a rule gaining a param)."""
    spec = RULES[rule_id]
    merged = {name: int(params.get(name, default)) for name, default in spec.defaults.items()}
    return RuleSetting(rule_id, enabled, action if action in spec.actions else ALERT, merged)


def apply_change(current: RuleSetting, change: Mapping[str, Any]) -> RuleSetting:
    """`PUT` body `{enabled?, action?, params?}`: what is given replaces, params one by one. Anything else, a
    param the rule does not have, or a value out of bounds → RuleConfigError; the setting is then unchanged."""
    spec = RULES[current.rule_id]
    unknown = set(change) - {"enabled", "action", "params"}
    if unknown:
        raise RuleConfigError("VALIDATION_ERROR", f"unknown field(s): {', '.join(sorted(unknown))}")
    enabled = change.get("enabled", current.enabled)
    if not isinstance(enabled, bool):
        raise RuleConfigError("VALIDATION_ERROR", "enabled must be true or false")
    action = change.get("action", current.action)
    if action not in spec.actions:
        raise RuleConfigError("INVALID_RULE_ACTION",
                              f"{spec.rule_id} takes action {' or '.join(spec.actions)}")
    params = dict(current.params)
    given = change.get("params", {})
    if not isinstance(given, Mapping):
        raise RuleConfigError("VALIDATION_ERROR", "params must be an object")
    for name, value in given.items():
        if name not in spec.defaults:
            raise RuleConfigError("INVALID_RULE_PARAM",
                                  f"{spec.rule_id} has no param {name!r} (it has {', '.join(spec.defaults)})")
        low, high = _BOUNDS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise RuleConfigError("INVALID_RULE_PARAM", f"{name} must be a whole number from {low} to {high}")
        params[name] = value
    return RuleSetting(spec.rule_id, enabled, str(action), params)


# ------------------------------------------------------------------------------------- the rules themselves


def high_frequency_transfers(rule: RuleSetting, from_giver_in_window: int, to_receiver_in_window: int) -> bool:
    """Counts include the transfer being judged: the (max_count + 1)-th within the window fires."""
    limit = rule.param("max_count")
    return from_giver_in_window > limit or to_receiver_in_window > limit


def new_binding_large_transfer(rule: RuleSetting, binding_created_at: datetime, accepted_at: datetime,
                               amount_fen: int) -> bool:
    young = accepted_at - binding_created_at < timedelta(hours=rule.param("binding_age_h"))
    return young and amount_fen >= rule.param("min_amount_fen")


def many_givers_one_relative(rule: RuleSetting, active_givers: int) -> bool:
    """`active_givers` counts the binding that just became active."""
    return active_givers > rule.param("max_givers")


def large_remote_payment(rule: RuleSetting, payer_province: str, institution_province: str,
                         accounts_fen: int) -> bool:
    """`accounts_fen` = acct_pay + acct_mulaid_pay (the cash part is the patient's own money)."""
    return payer_province != institution_province and accounts_fen >= rule.param("min_amount_fen")


def institution_cluster(rule: RuleSetting, distinct_payers_in_window: int) -> bool:
    return distinct_payers_in_window >= rule.param("min_persons")


def split_purchases(rule: RuleSetting, settlements_in_window: int) -> bool:
    """Counts include the settlement being judged."""
    return settlements_in_window > rule.param("max_count")


def distant_payments(rule: RuleSetting, provinces_in_window: Iterable[str]) -> bool:
    return len(set(provinces_in_window)) > 1


def holding_rule(fired: Iterable[RuleSetting]) -> RuleSetting | None:
    """Of the rules a transfer tripped, the first whose action is hold: its alert holds the transfer."""
    return next((rule for rule in fired if rule.holds), None)
