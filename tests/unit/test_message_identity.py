"""A message's identity at the gateway ("same msgid, same body"): a till's resend after a lost answer carries a new
inf_time, perhaps a new sign_no, and is still the same message; another input is another message."""

from __future__ import annotations

from typing import Any

from services.pharmacy_gateway.service_layer.exchange import request_hash


def _envelope(**changes: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "infno": "2102", "msgid": "P51010000001202501151000000001", "mdtrtarea_admvs": "510100",
        "insuplc_admdvs": "640000", "recer_sys_code": "FSI_LOCAL", "infver": "V1.0", "opter_type": "1",
        "opter": "001", "opter_name": "收银员", "inf_time": "2025-01-15 10:00:00",
        "fixmedins_code": "P51010000001", "fixmedins_name": "成都康泰大药房", "sign_no": "S1",
        "input": {"data": {"psn_no": "640000123", "medfee_sumamt": "12.50"}},
    }
    return envelope | changes


def test_a_resend_with_a_new_inf_time_or_sign_no_is_the_same_message() -> None:
    resent = _envelope(inf_time="2025-01-15 10:00:01", sign_no="S2")
    assert request_hash(resent) == request_hash(_envelope())


def test_key_order_does_not_matter() -> None:
    assert request_hash(dict(reversed(list(_envelope().items())))) == request_hash(_envelope())


def test_another_input_or_infno_is_another_message() -> None:
    other_input = _envelope(input={"data": {"psn_no": "640000123", "medfee_sumamt": "12.51"}})
    assert request_hash(other_input) != request_hash(_envelope())
    assert request_hash(_envelope(infno="2103")) != request_hash(_envelope())
