"""Issue 4 points 1 and 4, the pure parts: per-province transfer overrides, the receiver's acceptance deadline,
and when a change of a person's status ends their bindings."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest
from pydantic import ValidationError

from services.province_node.config import NodeSettings
from services.province_node.domain import notices
from services.province_node.domain.person_status import (
    binding_end_reason,
    pooling_in_province,
    pooling_region_of,
)
from services.province_node.domain.transfer_rules import QuietHours, TransferPolicy, accept_by
from shared.clock import SHANGHAI

SIX = time(6, 0)
DEFAULTS = TransferPolicy(max_per_day=3, max_amount_fen=200_000, quiet_hours=QuietHours.parse("22:00-06:00"))


def shanghai(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """An Asia/Shanghai wall-clock time as the UTC instant it is."""
    return datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


# ------------------------------------------------------------------------------------------ overrides


def node_settings(monkeypatch: pytest.MonkeyPatch, admdvs: str, **env: str) -> NodeSettings:
    """Settings as a node process reads them: from YIBAO_* variables."""
    for name in ("YIBAO_TRANSFER_QUIET_HOURS", "YIBAO_TRANSFER_MAX_PER_DAY", "YIBAO_TRANSFER_MAX_FEN",
                 "YIBAO_TRANSFER_OVERRIDES", "YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return NodeSettings(province_admdvs=admdvs)


OVERRIDES = '{"620000": {"max_per_day": 5, "max_fen": 100000, "quiet_hours": ""}, "610000": {"max_fen": 50000}}'


def test_without_overrides_every_province_applies_the_contract_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert node_settings(monkeypatch, "620000").transfer_policy() == DEFAULTS
    knobs = {"YIBAO_TRANSFER_MAX_PER_DAY": "4", "YIBAO_TRANSFER_MAX_FEN": "300000",
             "YIBAO_TRANSFER_QUIET_HOURS": "23:00-05:00"}
    assert node_settings(monkeypatch, "640000", **knobs).transfer_policy() == TransferPolicy(
        max_per_day=4, max_amount_fen=300_000, quiet_hours=QuietHours(time(23, 0), time(5, 0)))


def test_each_node_applies_the_override_of_its_own_province(monkeypatch: pytest.MonkeyPatch) -> None:
    gansu = node_settings(monkeypatch, "620000", YIBAO_TRANSFER_OVERRIDES=OVERRIDES).transfer_policy()
    assert gansu == TransferPolicy(max_per_day=5, max_amount_fen=100_000, quiet_hours=None)
    # Only the knobs an override names change; a province without one keeps the federation-wide values.
    shaanxi = node_settings(monkeypatch, "610000", YIBAO_TRANSFER_OVERRIDES=OVERRIDES).transfer_policy()
    assert shaanxi == TransferPolicy(max_per_day=3, max_amount_fen=50_000, quiet_hours=DEFAULTS.quiet_hours)
    ningxia = node_settings(monkeypatch, "640000", YIBAO_TRANSFER_OVERRIDES=OVERRIDES,
                            YIBAO_TRANSFER_MAX_PER_DAY="2").transfer_policy()
    assert ningxia == TransferPolicy(max_per_day=2, max_amount_fen=200_000, quiet_hours=DEFAULTS.quiet_hours)


@pytest.mark.parametrize("overrides", [
    '{"6200": {"max_fen": 1}}',  # not a province code
    '{"620100": {"max_fen": 1}}',  # a city, not a province
    '{"620000": {"max_fen": 0}}',
    '{"620000": {"max_per_day": -1}}',
    '{"620000": {"quiet_hours": "late"}}',
    '{"620000": {"max_amount": 1}}',  # a misspelt knob is refused, not silently ignored
    "not json",
])
def test_a_bad_override_stops_the_node_at_start(monkeypatch: pytest.MonkeyPatch, overrides: str) -> None:
    with pytest.raises((ValidationError, ValueError)):
        node_settings(monkeypatch, "620000", YIBAO_TRANSFER_OVERRIDES=overrides)


def test_receivers_must_accept_only_in_the_listed_provinces(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not node_settings(monkeypatch, "620000").receivers_must_accept  # default off
    listed = {"YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES": " 620000, 350000 "}
    assert node_settings(monkeypatch, "620000", **listed).receivers_must_accept
    assert node_settings(monkeypatch, "350000", **listed).receivers_must_accept
    assert not node_settings(monkeypatch, "640000", **listed).receivers_must_accept
    with pytest.raises(ValidationError):
        node_settings(monkeypatch, "620000", YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES="gansu")


# ------------------------------------------------------------------------------------------ accept_by


@pytest.mark.parametrize(("received", "deadline"), [
    (shanghai(2025, 1, 15, 10, 0), shanghai(2025, 1, 16, 6, 0)),  # during the day: 06:00 the next day
    (shanghai(2025, 1, 15, 21, 59, 59), shanghai(2025, 1, 16, 6, 0)),
    (shanghai(2025, 1, 15, 23, 30), shanghai(2025, 1, 16, 6, 0)),  # before midnight
    (shanghai(2025, 1, 16, 0, 30), shanghai(2025, 1, 16, 6, 0)),  # after midnight: the coming 06:00
    (shanghai(2025, 1, 16, 5, 59, 59), shanghai(2025, 1, 16, 6, 0)),
    (shanghai(2025, 1, 16, 6, 0), shanghai(2025, 1, 17, 6, 0)),  # exactly 06:00: strictly after
    (shanghai(2024, 12, 31, 12, 0), shanghai(2025, 1, 1, 6, 0)),  # across a year
    (shanghai(2024, 2, 28, 12, 0), shanghai(2024, 2, 29, 6, 0)),  # leap day
])
def test_accept_by_is_the_next_0600_in_shanghai(received: datetime, deadline: datetime) -> None:
    assert accept_by(received, SIX) == deadline
    assert accept_by(received, SIX).tzinfo is not None


def test_accept_by_reads_the_wall_clock_of_shanghai_whatever_zone_the_input_is_in() -> None:
    # 2025-01-15 23:00 UTC is 07:00 on the 16th in Shanghai: the next 06:00 there is on the 17th.
    assert accept_by(datetime(2025, 1, 15, 23, 0, tzinfo=UTC), SIX) == datetime(2025, 1, 16, 22, 0, tzinfo=UTC)
    assert shanghai(2025, 1, 16, 6, 0) == datetime(2025, 1, 15, 22, 0, tzinfo=UTC)


def test_awaiting_notice_names_the_deadline_in_shanghai_time() -> None:
    text = notices.transfer_awaiting_acceptance(50_000, shanghai(2025, 1, 16, 6, 0))
    assert text == "您的亲属向您转账500元，请于1月16日06:00前在医保钱包确认接收，逾期将退回"


# ------------------------------------------------------------------------------------------ person status


def test_pooling_codes_belong_to_the_province_and_pool_at_prefecture_level() -> None:
    assert pooling_in_province("620100", "620000") and pooling_in_province("640104", "640000")
    assert not pooling_in_province("610100", "620000")
    assert not pooling_in_province("6201", "620000") and not pooling_in_province("62010x", "620000")
    assert pooling_region_of("640104") == pooling_region_of("640105") == "640100"
    assert pooling_region_of("640200") == "640200"


@pytest.mark.parametrize(("before", "after", "reason"), [
    ((True, "640100"), (False, "640100"), "INSURANCE_ENDED"),
    ((True, "640100"), (False, "640200"), "INSURANCE_ENDED"),  # the insurance ending is what ends them
    ((True, "640100"), (True, "640200"), "MOVED_REGION"),
    ((True, "640104"), (True, "640105"), None),  # districts of one pool (银川)
    ((True, "640100"), (True, "640104"), None),
    ((True, "640100"), (True, "640100"), None),
    ((False, "640100"), (False, "640100"), None),  # ended twice: ended once
])
def test_which_status_changes_end_bindings(before: tuple[bool, str], after: tuple[bool, str],
                                           reason: str | None) -> None:
    assert binding_end_reason(insured_before=before[0], insured_after=after[0], pooling_before=before[1],
                              pooling_after=after[1]) == reason


def test_binding_notices_for_both_parties() -> None:
    assert notices.binding_changed("李*英", "ENDED", "INSURANCE_ENDED") == "您与李*英的共济绑定已解除（参保关系终止）"
    assert notices.binding_changed("李*英", "ENDED", "UNBOUND") == "您与李*英的共济绑定已解除"
    assert notices.binding_changed("李*英", "ACTIVE") == "您与李*英的共济绑定已生效"
    for_relative = notices.binding_changed_for_relative
    assert for_relative("PENDING_CONSENT") == "您的亲属申请与您绑定医保钱包共济，请登录医保钱包刷脸确认"
    assert for_relative("ENDED", "MOVED_REGION") == "您与亲属的医保钱包共济绑定已解除（参保地变更）"
    assert for_relative("ACTIVE") is None  # the relative confirmed it themself
    assert notices.transfer_refunded(50_000, "BINDING_ENDED") == "您的共济转账500元已退回个人账户（共济绑定已解除）"
    assert notices.transfer_refunded(50_000, "SOMETHING_NEW") == "您的共济转账500元已退回个人账户（SOMETHING_NEW）"
