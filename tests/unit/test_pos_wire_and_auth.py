"""The national interface's wire rules and the x-tif signature (pure, no network)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypedDict

import pytest

from services.pharmacy_gateway.domain import tif_auth, wire
from services.pharmacy_gateway.domain.wire import Refused

CODE = "P51010000001"
NOW_S = 1_736_906_400  # 2025-01-15 10:00 Asia/Shanghai


# ------------------------------------------------------------------------------------------------ signature


def test_signature_is_sha256_of_timestamp_token_nonce_timestamp() -> None:
    expected = hashlib.sha256(b"1736906400secret-tokenabcdef12345678901736906400").hexdigest()
    assert tif_auth.tif_signature("1736906400", "secret-token", "abcdef1234567890") == expected
    assert expected == expected.lower() and len(expected) == 64


class CheckArgs(TypedDict, total=False):
    """What a case of `_check` changes."""

    timestamp: str | None
    nonce: str | None
    signature: str | None
    now_s: float
    token: str


def _check(timestamp: str | None = str(NOW_S), nonce: str | None = "abcdef1234567890",
           signature: str | None = None, now_s: float = NOW_S, token: str = "tok") -> int:
    if signature is None and timestamp is not None and nonce is not None:
        signature = tif_auth.tif_signature(timestamp, token, nonce)
    return tif_auth.check_headers(timestamp, nonce, signature, paas_token="tok", now_s=now_s, window_s=300)


def test_a_fresh_correct_signature_passes_at_the_window_edges() -> None:
    assert _check() == NOW_S
    assert _check(now_s=NOW_S + 300) == NOW_S
    assert _check(now_s=NOW_S - 300) == NOW_S


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"timestamp": None}, "required"),
    ({"nonce": None}, "required"),
    ({"signature": ""}, "required"),
    ({"now_s": NOW_S + 301}, "300 s"),
    ({"now_s": NOW_S - 301}, "300 s"),
    ({"timestamp": "17369064OO"}, "unix seconds"),
    ({"nonce": "short"}, "x-tif-nonce"),
    ({"nonce": "has space inside!"}, "x-tif-nonce"),
    ({"token": "another-token"}, "does not match"),
    ({"signature": "A" * 64}, "does not match"),  # upper-case hex is not the scheme
    ({"signature": "0" * 63}, "does not match"),
])
def test_anything_wrong_is_refused(kwargs: CheckArgs, reason: str) -> None:
    with pytest.raises(tif_auth.SignatureRefused, match=reason):
        _check(**kwargs)


def test_paas_tokens_are_derived_per_paas_id_and_key() -> None:
    token = tif_auth.paas_token_for(b"key", "PAAS1")
    assert token == tif_auth.paas_token_for(b"key", "PAAS1")
    assert token != tif_auth.paas_token_for(b"key", "PAAS2") != tif_auth.paas_token_for(b"other", "PAAS1")
    assert len(token) == 64


# ------------------------------------------------------------------------------------------------ msgid


def test_msgid_is_code_time_and_sequence() -> None:
    assert wire.check_msgid(f"{CODE}202501151000000001", CODE) == f"{CODE}202501151000000001"


@pytest.mark.parametrize(("msgid", "reason"), [
    (f"{CODE}20250115100000001", "30 characters"),  # 29 characters
    (f"{CODE}2025011510000000011", "30 characters"),
    (None, "30 characters"),
    (12345, "30 characters"),
    (f"P51010000002{'202501151000000001'}", "your fixmedins_code"),
    (f"{CODE}20251315100000000X", "18 digits"),
    (f"{CODE}202513151000000001", "yyyyMMddHHmmss"),  # month 13
    (f"p51010000001{'202501151000000001'}", "upper-case"),
])
def test_bad_msgids_are_refused(msgid: object, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        wire.check_msgid(msgid, CODE)


def test_ref_msgid_is_receiver_admdvs_time_and_serial() -> None:
    ref = wire.ref_msgid("510100", datetime(2025, 1, 15, 2, 0, 5, tzinfo=UTC), 12_345_678_901)
    assert ref == "510100" + "20250115100005" + "2345678901"
    assert len(ref) == 30


def test_wire_times_are_shanghai() -> None:
    assert wire.wire_time(datetime(2025, 1, 15, 16, 30, tzinfo=UTC)) == "2025-01-16 00:30:00"
    assert wire.parse_wire_time("2025-01-16 00:30:00", "begntime") == datetime(2025, 1, 15, 16, 30, tzinfo=UTC)
    with pytest.raises(Refused):
        wire.parse_wire_time("2025-01-16T00:30:00", "begntime")
    with pytest.raises(Refused, match="yyyy-MM-dd"):
        wire.parse_date("2025-1-5", "stmt_begndate")


# ------------------------------------------------------------------------------------------------ amounts


@pytest.mark.parametrize(("value", "fen"), [
    (Decimal("12.30"), 1230), (Decimal("12.3"), 1230), ("0.01", 1), (7, 700), ("100", 10000), (0, 0),
    (12.3, 1230),  # a float from a JSON parser: its shortest text is what was sent
    (Decimal("10000000000.00"), 1_000_000_000_000),  # MAX_WIRE_YUAN itself; beyond it: test_amount_bounds.py
])
def test_amounts_are_parsed_exactly(value: object, fen: int) -> None:
    assert wire.amount_fen(value, "x") == fen


@pytest.mark.parametrize(("value", "reason"), [
    (Decimal("12.345"), "two decimals"), ("0.001", "two decimals"), (Decimal("-1.00"), "negative"),
    ("-0.01", "negative"), (True, "boolean"), ("NaN", "finite"), ("12,30", "number"), (None, "required"),
    ("", "required"), ([1], "amount"),
])
def test_bad_amounts_are_refused(value: object, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        wire.amount_fen(value, "x")


def test_yuan_go_out_exactly() -> None:
    assert [wire.yuan(fen) for fen in (0, 1, 10, 1230, 6930, 100_000_001)] == [0.0, 0.01, 0.1, 12.3, 69.3,
                                                                               1000000.01]
    assert repr(wire.yuan(6930)) == "69.3"


def test_counts_and_line_rounding() -> None:
    assert wire.count(Decimal("0.5"), "cnt") == Decimal("0.5")
    assert wire.count(3, "cnt") == 3
    for bad in (0, -1, Decimal("0.00001"), "x", True):
        with pytest.raises(Refused):
            wire.count(bad, "cnt")
    assert wire.line_fen(Decimal(3), 333) == 999
    assert wire.line_fen(Decimal("0.5"), 333) == 167  # 166.5 rounds half up, as a till rounds a line
