"""A binding's life: decided by the hub's registry (services/national_hub/domain/binding_lifecycle.py) and
replicated by the nodes (services/province_node/domain/binding_replica.py). Every allowed change, and every
refused or repeated one."""

from __future__ import annotations

from typing import get_args

import pytest

from services.national_hub.domain import binding_lifecycle
from services.national_hub.domain.binding_lifecycle import BindingState, Change
from services.province_node.domain import binding_replica
from services.province_node.domain.errors import DomainError
from shared.contracts.events import BindingSnapshot
from shared.errors import ApiError

GIVER, RELATIVE, STRANGER = "110100000000000001", "440100000000000002", "330100000000000003"


def test_the_relative_confirms_a_pending_binding() -> None:
    change = binding_lifecycle.confirm(BindingState.PENDING_CONSENT, 1, relative_psn_no=RELATIVE, psn_no=RELATIVE)
    assert change == Change(BindingState.ACTIVE, 2, None)
    assert change.judged_for_fake_kinship and not change.refunds_in_flight


def test_confirming_an_active_binding_again_changes_nothing() -> None:
    assert binding_lifecycle.confirm(BindingState.ACTIVE, 2, relative_psn_no=RELATIVE, psn_no=RELATIVE) is None


def test_an_ended_binding_cannot_be_confirmed() -> None:
    with pytest.raises(ApiError) as refused:
        binding_lifecycle.confirm(BindingState.ENDED, 3, relative_psn_no=RELATIVE, psn_no=RELATIVE)
    assert (refused.value.status, refused.value.code) == (422, "BINDING_NOT_PENDING")


@pytest.mark.parametrize("psn_no", [GIVER, STRANGER])
def test_only_the_relative_confirms(psn_no: str) -> None:
    with pytest.raises(ApiError) as refused:
        binding_lifecycle.confirm(BindingState.PENDING_CONSENT, 1, relative_psn_no=RELATIVE, psn_no=psn_no)
    assert (refused.value.status, refused.value.code) == (404, "BINDING_NOT_FOUND")


@pytest.mark.parametrize("state", [BindingState.PENDING_CONSENT, BindingState.ACTIVE])
@pytest.mark.parametrize("party", [GIVER, RELATIVE])
def test_either_party_ends_an_open_binding_which_refunds_what_is_in_flight(state: BindingState,
                                                                          party: str) -> None:
    change = binding_lifecycle.end(state, 4, parties=(GIVER, RELATIVE), psn_no=party, reason=None)
    assert change == Change(BindingState.ENDED, 5, "UNBOUND")
    assert change.refunds_in_flight and not change.judged_for_fake_kinship
    assert binding_lifecycle.end(state, 4, parties=(GIVER, RELATIVE), psn_no=party,
                                 reason="INSURANCE_ENDED") == Change(BindingState.ENDED, 5, "INSURANCE_ENDED")


def test_ending_an_ended_binding_again_changes_nothing() -> None:
    assert binding_lifecycle.end(BindingState.ENDED, 5, parties=(GIVER, RELATIVE), psn_no=GIVER,
                                 reason=None) is None
    assert binding_lifecycle.end_for(BindingState.ENDED, 5, "MOVED_REGION") is None


def test_a_stranger_cannot_end_a_binding() -> None:
    with pytest.raises(ApiError) as refused:
        binding_lifecycle.end(BindingState.ACTIVE, 2, parties=(GIVER, RELATIVE), psn_no=STRANGER, reason=None)
    assert (refused.value.status, refused.value.code) == (404, "BINDING_NOT_FOUND")


@pytest.mark.parametrize("state", [BindingState.PENDING_CONSENT, BindingState.ACTIVE])
def test_a_partys_insurance_ending_ends_an_open_binding(state: BindingState) -> None:
    assert binding_lifecycle.end_for(state, 2, "INSURANCE_ENDED") == Change(BindingState.ENDED, 3, "INSURANCE_ENDED")


def test_open_means_not_ended() -> None:
    assert binding_lifecycle.is_open(BindingState.PENDING_CONSENT) and binding_lifecycle.is_open(BindingState.ACTIVE)
    assert not binding_lifecycle.is_open(BindingState.ENDED)


def test_hub_and_nodes_speak_the_snapshots_words() -> None:
    wire = list(get_args(BindingSnapshot.model_fields["state"].annotation))
    assert [s.value for s in BindingState] == wire
    assert [s.value for s in binding_replica.BindingState] == wire


# ---------------------------------------------------------------------------------- the node's replica


def test_the_replica_takes_only_newer_snapshots() -> None:
    assert binding_replica.is_newer(None, 1)
    assert binding_replica.is_newer(1, 2)
    assert not binding_replica.is_newer(2, 2)
    assert not binding_replica.is_newer(3, 2)


def test_the_giver_acts_on_the_binding() -> None:
    binding_replica.check_giver(giver_psn_no=GIVER, relative_psn_no=RELATIVE, psn_no=GIVER)
    with pytest.raises(DomainError) as relative:
        binding_replica.check_giver(giver_psn_no=GIVER, relative_psn_no=RELATIVE, psn_no=RELATIVE)
    assert (relative.value.status, relative.value.code) == (403, "NOT_BINDING_GIVER")
    with pytest.raises(DomainError) as stranger:
        binding_replica.check_giver(giver_psn_no=GIVER, relative_psn_no=RELATIVE, psn_no=STRANGER)
    assert (stranger.value.status, stranger.value.code) == (404, "BINDING_NOT_FOUND")


def test_money_moves_on_an_active_binding_only() -> None:
    binding_replica.check_active(binding_replica.BindingState.ACTIVE)
    for state in (binding_replica.BindingState.PENDING_CONSENT, binding_replica.BindingState.ENDED):
        with pytest.raises(DomainError) as refused:
            binding_replica.check_active(state)
        assert refused.value.code == "BINDING_NOT_ACTIVE"
        assert refused.value.message == f"the binding is {state.value}"


def test_what_the_replica_knows_of_a_bindings_state() -> None:
    assert binding_replica.has_ended(binding_replica.BindingState.ENDED)
    assert not binding_replica.has_ended(binding_replica.BindingState.ACTIVE)
    assert not binding_replica.has_ended(None)
    assert binding_replica.asks_relative_to_confirm(binding_replica.BindingState.PENDING_CONSENT)
    assert not binding_replica.asks_relative_to_confirm(binding_replica.BindingState.ACTIVE)
