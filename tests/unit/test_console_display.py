"""How the console shows money, times, places and personal data."""

from __future__ import annotations

from datetime import UTC, datetime

from services.national_hub.entrypoints.console import display
from shared.ids import make_id_no


def test_money_in_yuan_from_integer_fen() -> None:
    assert display.yuan(123_450) == "¥1,234.50"
    assert display.yuan(5) == "¥0.05"
    assert display.yuan(0) == "¥0.00"
    assert display.yuan(-929_950) == "-¥9,299.50"
    assert display.yuan(10**12) == "¥10,000,000,000.00"
    assert display.yuan(None) == "—"


def test_times_in_shanghai() -> None:
    assert display.shanghai_time("2026-03-09T16:30:00Z") == "2026-03-10 00:30:00"
    assert display.shanghai_time("2026-03-09T16:30:00+00:00") == "2026-03-10 00:30:00"
    assert display.shanghai_time(datetime(2026, 3, 9, 16, 30, tzinfo=UTC)) == "2026-03-10 00:30:00"
    assert display.shanghai_time(None) == "—" and display.shanghai_time("not a time") == "not a time"


def test_places_labels_and_masking() -> None:
    assert display.province("640000") == "宁夏 640000" and display.province("640100") == "宁夏 640100"
    assert display.label("cross_province") == "跨省" and display.label("UNKNOWN_CODE") == "UNKNOWN_CODE"
    assert display.masked_name("王小明") == "王*明" and display.masked_name("王*明") == "王*明"
    id_no = make_id_no("64010219800101123")
    assert display.masked_text(f"seen {id_no} twice") == f"seen {id_no[:4]}{'*' * 10}{id_no[-4:]} twice"
