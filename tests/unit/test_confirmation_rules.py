"""Issue 13's small rules without I/O: the SMS reply's shape, the phone as stored, the sign-in counting window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from services.national_hub.service_layer.sign_in_throttle import (
    BLOCK,
    MAX_FAILURES_PER_PERSON,
    WINDOW,
    _counted,
)
from services.province_node.domain import notices
from services.province_node.service_layer.sms_confirmation import confirmation_code, phone_digits
from shared.web import validation_problem

NOW = datetime(2026, 1, 15, 2, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "code"), [("确认 123456", "123456"), ("  确认123456 ", "123456"),
                                            ("确认  000001", "000001"), ("确认\u3000１２３４５６", "123456")])
def test_a_confirmation_reply_is_the_word_and_six_digits(text: str, code: str) -> None:
    match = confirmation_code(text)
    assert match is not None and match.group(1) == code


@pytest.mark.parametrize("text", ["确认 12345", "确认 1234567", "确定 123456", "123456", "确认 12345٦", "",
                                  "确认 123456 谢谢"])
def test_anything_else_is_no_confirmation(text: str) -> None:
    assert confirmation_code(text) is None


@pytest.mark.parametrize(("given", "stored"), [("13812345678", "13812345678"), ("+86 138 1234 5678", "13812345678"),
                                               ("008613812345678", "13812345678"), ("138-1234-5678", "13812345678")])
def test_the_phone_is_compared_as_stored(given: str, stored: str) -> None:
    assert phone_digits(given) == stored


def test_the_request_notice_ends_with_the_code() -> None:
    assert notices.binding_request_with_sms_code("123456").endswith("回复“确认 123456”即可完成绑定")


def test_the_fifth_failure_in_the_window_blocks_for_15_minutes() -> None:
    row = None
    for k in range(MAX_FAILURES_PER_PERSON):
        values = _counted(row, NOW + timedelta(minutes=k), MAX_FAILURES_PER_PERSON)
        row = SimpleNamespace(**values)
    assert row is not None and row.failures == MAX_FAILURES_PER_PERSON
    assert row.blocked_until == NOW + timedelta(minutes=MAX_FAILURES_PER_PERSON - 1) + BLOCK


def test_a_failure_after_the_window_starts_a_new_count() -> None:
    old = SimpleNamespace(failures=4, window_started_at=NOW, blocked_until=None)
    values = _counted(old, NOW + WINDOW, MAX_FAILURES_PER_PERSON)
    assert (values["failures"], values["window_started_at"], values["blocked_until"]) == (1, NOW + WINDOW, None)
    values = _counted(old, NOW + WINDOW - timedelta(seconds=1), MAX_FAILURES_PER_PERSON)
    assert values["failures"] == 5 and values["blocked_until"] is not None


def test_a_field_named_id_no_failing_its_shape_is_invalid_id_no() -> None:
    problem = validation_problem([{"loc": ("body", "relative_id_no"), "msg": "String should match pattern",
                                   "type": "string_pattern_mismatch"}])
    assert problem[0] == "INVALID_ID_NO"
    assert validation_problem([{"loc": ("body", "relation"), "msg": "x", "type": "literal_error"}])[0] == \
        "VALIDATION_ERROR"
