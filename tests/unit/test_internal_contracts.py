"""Internal API requests refuse at validation what the use case behind them could not store (a 422, never the
500 that a fuzzer of the internal routes found)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.contracts.events import BindingSnapshot
from shared.contracts.internal_api import PosReverseRequest
from shared.contracts.medical_api import MedicalCall

MSGID = "H51010000001" + "202612021200000001"
OTHER = "H51010000001" + "202612021200000002"


def test_a_pos_reversal_cannot_name_itself() -> None:
    """It would preempt its own msgid and then store its answer under the same msgid."""
    fields = {"oinfno": "2102", "psn_no": "640000000000001", "fixmedins_code": "H51010000001"}
    assert PosReverseRequest(msgid=MSGID, omsgid=OTHER, **fields).omsgid == OTHER
    with pytest.raises(ValidationError, match="itself"):
        PosReverseRequest(msgid=MSGID, omsgid=MSGID, **fields)


def test_a_medical_reversal_cannot_name_itself() -> None:
    fields = {"infno": "2601", "psn_no": "640000000000001", "fixmedins_code": "H51010000001",
              "institution_admdvs": "510100", "hosp_lv": "3", "oinfno": "2207"}
    assert MedicalCall(msgid=MSGID, omsgid=OTHER, **fields).omsgid == OTHER
    with pytest.raises(ValidationError, match="itself"):
        MedicalCall(msgid=MSGID, omsgid=MSGID, **fields)


def test_a_binding_snapshot_is_bounded_as_the_replicas_columns() -> None:
    """The hub's push (`bindings:apply`) and event carry it; beyond the columns the node's database refused it."""
    good = {"binding_id": "B" + "0" * 32, "giver_psn_no": "640000000000001", "giver_admdvs": "640000",
            "relative_psn_no": "620000000000001", "relative_admdvs": "620000", "relative_name_masked": "李*英",
            "relation": "PARENT", "state": "ACTIVE", "version": 2, "created_at": datetime.now(UTC)}
    assert BindingSnapshot(**good).version == 2
    for field, value in [("binding_id", "B" * 41), ("version", 2**31), ("version", -1), ("giver_admdvs", "64"),
                         ("created_at", datetime(2026, 12, 2, 12, 0)), ("relation", "R" * 17)]:
        with pytest.raises(ValidationError):
            BindingSnapshot(**(good | {field: value}))
