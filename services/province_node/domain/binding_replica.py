"""A binding as a province node sees it: a replica of the hub's registry (the hub decides every change; see
services/national_hub/domain/binding_lifecycle.py), kept at the highest version the node has heard of.

    PENDING_CONSENT --the relative confirms--> ACTIVE --either party, or the insurance ends--> ENDED
    PENDING_CONSENT --either party, or the insurance ends--> ENDED

Pure rules the node applies to its replica: which snapshot wins, who may use a binding, what it allows."""

from __future__ import annotations

from enum import StrEnum

from services.province_node.domain.errors import DomainError, Forbidden, NotFound


class BindingState(StrEnum):
    PENDING_CONSENT = "PENDING_CONSENT"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


def is_newer(current_version: int | None, snapshot_version: int) -> bool:
    """A snapshot replaces the replica only if it is newer: snapshots may arrive late, twice, or out of order."""
    return current_version is None or current_version < snapshot_version


def check_giver(*, giver_psn_no: str, relative_psn_no: str, psn_no: str) -> None:
    """Only the giver acts on a binding as its giver (sends, sets quotas); the relative is told it is not theirs to
    do, anyone else that there is no such binding."""
    if psn_no not in (giver_psn_no, relative_psn_no):
        raise NotFound("BINDING_NOT_FOUND", "no such binding for this person")
    if giver_psn_no != psn_no:
        raise Forbidden("NOT_BINDING_GIVER", "only the giver of a binding can do this")


def check_active(state: BindingState | str) -> None:
    """Money moves on an ACTIVE binding only."""
    if state != BindingState.ACTIVE:
        raise DomainError("BINDING_NOT_ACTIVE", f"the binding is {state}")


def has_ended(state: BindingState | str | None) -> bool:
    """This node already knows the binding ended: a transfer on it is refused, not credited (the hub's cancel
    for it is on its way, and ending a binding refunds what is in flight on it)."""
    return state == BindingState.ENDED


def asks_relative_to_confirm(state: BindingState | str) -> bool:
    """A new binding waits for the relative, who is asked (with an SMS confirmation code) to confirm it."""
    return state == BindingState.PENDING_CONSENT
