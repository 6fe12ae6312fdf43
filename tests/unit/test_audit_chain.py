"""The audit chain's pure parts (shared/audit.py): an entry sealed from its pending row (PostgreSQL) has the very
bytes, so the very hash, of one chained at commit (SQLite); verify_chain names the first bad seq of an edited,
renumbered or missing entry and of a chain shorter than a checkpointed head; pending postings are replayed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

from shared import audit

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


@pytest.mark.parametrize("data", [
    {},
    {"legs": [["PA:1", -100], ["WALLET:2", 100]], "entry_id": 7, "kind": "TRANSFER", "ref": "T1"},
    {"name": "张三", "note": 'a "quoted" \\ back\nslash', "ok": True, "none": None, "nested": {"b": 1, "a": [2]}},
])
def test_a_sealed_entry_has_the_bytes_of_one_chained_at_commit(data: dict[str, Any]) -> None:
    at = AT.astimezone(timezone(timedelta(hours=8)))  # any zone: the body holds UTC
    pending_data = audit.canonical(data).decode()
    sealed = audit.sealed_body(42, at.astimezone(UTC).isoformat(), "quota.state", "B-1 \"x\"", pending_data)
    assert sealed == audit.entry_body(42, at, "quota.state", "B-1 \"x\"", data)


def _chain(n: int) -> list[Any]:
    rows, prev = [], audit.ZERO_HASH
    for seq in range(1, n + 1):
        body = audit.entry_body(seq, AT, audit.POSTING, f"E{seq}",
                                audit.legs_data(seq, "MONTHLY_CREDIT", f"E{seq}", [("FUNDING", -seq), ("PA:1", seq)]))
        prev = audit.chain_hash(prev, body)
        rows.append(SimpleNamespace(seq=seq, body=body.decode(), hash=prev))
    return rows


def test_an_untouched_chain_verifies_and_replays_its_postings() -> None:
    rows = _chain(5)
    verdict = audit.Verdict(True, 0)
    replay = audit.verify_chain(rows, {5: rows[-1].hash}, verdict)
    assert verdict.ok and verdict.entries_checked == 5
    assert replay.balances == {"FUNDING": -15, "PA:1": 15} and replay.last_seq_of_account["PA:1"] == 5


def test_an_edited_renumbered_or_missing_entry_is_named() -> None:
    rows = _chain(5)
    edited = [*rows[:2], SimpleNamespace(seq=3, body=rows[2].body.replace('"E3"', '"E9"'), hash=rows[2].hash),
              *rows[3:]]
    verdict = audit.Verdict(True, 0)
    audit.verify_chain(edited, {}, verdict)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 3)
    verdict = audit.Verdict(True, 0)
    audit.verify_chain([*rows[:2], *rows[3:]], {}, verdict)
    assert (verdict.ok, verdict.first_bad_seq, verdict.reason) == (False, 3, "entry missing")
    verdict = audit.Verdict(True, 0)
    audit.verify_chain(rows[:3], {5: rows[-1].hash}, verdict)
    assert (verdict.ok, verdict.first_bad_seq) == (False, 4)


def test_pending_postings_are_replayed_after_the_chain() -> None:
    rows = _chain(2)
    verdict = audit.Verdict(True, 0)
    replay = audit.verify_chain(rows, {}, verdict)
    pending = [SimpleNamespace(kind=audit.POSTING, data=audit.canonical(audit.legs_data(
        9, "MONTHLY_CREDIT", "E9", [("FUNDING", -50), ("PA:1", 50)])).decode()),
        SimpleNamespace(kind="quota.state", data="{}")]
    audit.replay_pending(pending, replay, 3)
    assert replay.balances == {"FUNDING": -53, "PA:1": 53} and replay.legs_by_entry[9][0] == 3
    audit.check_ledger(replay, {1: [("FUNDING", -1), ("PA:1", 1)], 2: [("FUNDING", -2), ("PA:1", 2)],
                                9: [("FUNDING", -50), ("PA:1", 50)]}, {"PA:1": 53}, verdict)
    assert verdict.ok
