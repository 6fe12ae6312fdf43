"""The quota's state machines (services/province_node/domain/quota.py): the giver's grant OPEN → CLOSING → CLOSED
and the relative's mirror OPEN → CLOSED, with the reserve, spend and release arithmetic of quota_rules.py, and the
journal entry of each state (issue 10.1; issue 12, API.md "Audit chain")."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.province_node.domain.errors import DomainError
from services.province_node.domain.quota import Grant, GrantState, InvalidQuotaTransition, Mirror, QuotaEvent


def test_a_new_grant_is_open_and_each_limit_is_a_new_version() -> None:
    grant = Grant.new("B1", 2026)
    assert (grant.state, grant.version, grant.annual_quota_fen) == (GrantState.OPEN, 0, 0)
    raised = grant.set_limit(50_000)
    assert (raised.annual_quota_fen, raised.version, raised.state) == (50_000, 1, GrantState.OPEN)
    lowered = raised.set_limit(20_000)
    assert (lowered.annual_quota_fen, lowered.version) == (20_000, 2)
    assert grant.annual_quota_fen == 0  # values, not mutated


def test_a_raise_reserves_the_difference_and_a_lowering_reserves_nothing_until_the_mirror_shrinks() -> None:
    grant = Grant.new("B1", 2026).set_limit(50_000)
    assert grant.reserve_to_add_fen(0) == 50_000
    assert grant.reserve_to_add_fen(30_000) == 20_000
    # The mirror still applies 50,000 with 10,000 spent: lowering to 20,000 keeps 40,000 reserved for now.
    lowered = Grant(grant.binding_id, 2026, 50_000, 1, GrantState.OPEN, 50_000, 10_000).set_limit(20_000)
    assert lowered.reserve_to_add_fen(40_000) == 0 and lowered.release_fen(40_000) == 0
    # The mirror reports the lower limit: 30,000 of the reserve goes back (20,000 - 10,000 spent stays).
    shrunk = lowered.mirrored(20_000, 10_000, closed=False)
    assert shrunk.release_fen(40_000) == 30_000 and shrunk.state is GrantState.OPEN


def test_ending_asks_for_nothing_more_and_the_closed_mirror_closes_the_grant() -> None:
    grant = Grant("B1", 2026, 50_000, 3, GrantState.OPEN, 50_000, 12_000)
    ending = grant.end()
    assert (ending.state, ending.annual_quota_fen, ending.version, ending.requested_fen) == (
        GrantState.CLOSING, 0, 4, 0)
    # Until the mirror closes, what it still allows stays reserved.
    assert ending.release_fen(38_000) == 0
    closed = ending.mirrored(12_000, 12_000, closed=True)
    assert closed.state is GrantState.CLOSED and closed.release_fen(38_000) == 38_000


def test_an_open_grant_stays_open_when_its_mirror_reports_closed() -> None:
    """The relative's node closed first (the binding ended there); the giver's own end follows."""
    grant = Grant("B1", 2026, 50_000, 1, GrantState.OPEN, 50_000, 0)
    assert grant.mirrored(0, 0, closed=True).state is GrantState.OPEN


@pytest.mark.parametrize("state", [GrantState.CLOSING, GrantState.CLOSED])
def test_an_ended_grant_is_neither_set_nor_ended_again(state: GrantState) -> None:
    grant = Grant("B1", 2026, 0, 4, state)
    with pytest.raises(InvalidQuotaTransition) as refused:
        grant.set_limit(10_000)
    assert (refused.value.status, refused.value.code) == (422, "QUOTA_CLOSED")
    with pytest.raises(InvalidQuotaTransition):
        grant.end()


def test_a_grant_row_reads_back() -> None:
    row = SimpleNamespace(binding_id="B1", year=2026, annual_quota_fen=5, version=2, state="CLOSING",
                          mirror_quota_fen=5, mirror_used_fen=1)
    assert Grant.of(row) == Grant("B1", 2026, 5, 2, GrantState.CLOSING, 5, 1)


def test_the_first_set_opens_the_mirror_and_a_closing_first_set_opens_it_closed() -> None:
    mirror = Mirror.first("B1", 2026, 50_000, closing=False, version=1)
    assert (mirror.state, mirror.annual_quota_fen, mirror.used_fen, mirror.available_fen) == ("OPEN", 50_000, 0,
                                                                                               50_000)
    closed = Mirror.first("B1", 2026, 0, closing=True, version=2)
    assert (closed.state, closed.annual_quota_fen) == ("CLOSED", 0)


def test_only_a_newer_set_applies_and_never_below_what_was_spent() -> None:
    mirror = Mirror("B1", 2026, 50_000, 30_000, version=2, closed=False)
    assert mirror.apply_set(80_000, closing=False, version=2) is None
    assert mirror.apply_set(80_000, closing=False, version=1) is None
    lowered = mirror.apply_set(10_000, closing=False, version=3)
    assert lowered is not None and (lowered.annual_quota_fen, lowered.version, lowered.closed) == (30_000, 3, False)
    ending = mirror.apply_set(0, closing=True, version=3)
    assert ending is not None and (ending.annual_quota_fen, ending.closed) == (30_000, True)
    # A closed mirror stays closed, whatever a later set says.
    reopened = Mirror("B1", 2026, 30_000, 30_000, 3, closed=True).apply_set(90_000, closing=False, version=4)
    assert reopened is not None and (reopened.annual_quota_fen, reopened.closed) == (30_000, True)


def test_spending_up_to_the_limit_and_not_past_it() -> None:
    mirror = Mirror("B1", 2026, 50_000, 0, 1, False)
    spent = mirror.spend(50_000)
    assert (spent.used_fen, spent.available_fen) == (50_000, 0)
    with pytest.raises(DomainError) as refused:
        spent.spend(1)
    assert refused.value.code == "QUOTA_EXCEEDED"
    with pytest.raises(DomainError) as closed:
        Mirror("B1", 2026, 50_000, 0, 1, True).spend(1)
    assert closed.value.code == "QUOTA_CLOSED"


def test_giving_back_lowers_what_was_spent_and_a_closed_mirror_follows_it_down() -> None:
    open_mirror = Mirror("B1", 2026, 50_000, 20_000, 1, False)
    assert open_mirror.give_back(5_000) == Mirror("B1", 2026, 50_000, 15_000, 1, False)
    assert open_mirror.give_back(90_000).used_fen == 0
    closed = Mirror("B1", 2026, 20_000, 20_000, 1, True)
    assert closed.give_back(5_000) == Mirror("B1", 2026, 15_000, 15_000, 1, True)


def test_closing_stops_the_mirror_at_what_was_spent() -> None:
    closed = Mirror("B1", 2026, 50_000, 12_000, 4, False).close()
    assert (closed.state, closed.annual_quota_fen, closed.used_fen, closed.version, closed.available_fen) == (
        "CLOSED", 12_000, 12_000, 4, 0)


def test_each_state_is_journaled_with_its_side_event_and_values() -> None:
    grant = Grant("B1", 2026, 50_000, 3, GrantState.OPEN, 50_000, 12_000).end()
    assert grant.journal(QuotaEvent.ENDING) == {
        "side": "giver", "event": "ending", "year": 2026, "state": "CLOSING", "annual_quota_fen": 0,
        "version": 4, "mirror_quota_fen": 50_000, "mirror_used_fen": 12_000}
    mirror = Mirror("B1", 2026, 50_000, 0, 1, False).spend(700)
    assert mirror.journal(QuotaEvent.SPENT, amount_fen=700, use="pharmacy") == {
        "side": "relative", "event": "spent", "year": 2026, "state": "OPEN", "annual_quota_fen": 50_000,
        "used_fen": 700, "version": 1, "amount_fen": 700, "use": "pharmacy"}
