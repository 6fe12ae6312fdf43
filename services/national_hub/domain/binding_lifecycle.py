"""A binding's life in the hub's registry, the one place it is decided (the nodes keep replicas). Pure: the use
cases (service_layer/bindings.py) read the row locked, ask here, and write what the answer says.

    (kinship proven) --> PENDING_CONSENT, version 1
    PENDING_CONSENT --the relative confirms--> ACTIVE
    PENDING_CONSENT | ACTIVE --either party ends it, or a party's insurance ends or moves region--> ENDED

Every change takes the next version and is published whole to both parties' nodes. Confirming an ACTIVE
binding or ending an ENDED one again changes nothing (the answer is the binding as it is); confirming an ENDED
one is refused. Ending refunds what is still in flight on the binding; becoming ACTIVE is judged by the
fake-kinship risk rule."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.errors import ApiError


class BindingState(StrEnum):
    PENDING_CONSENT = "PENDING_CONSENT"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


FIRST_VERSION = 1
UNBOUND = "UNBOUND"  # the end reason when a party ends the binding themself


def is_open(state: BindingState | str) -> bool:
    """Not ENDED: one open binding per giver-relative pair."""
    return state != BindingState.ENDED


@dataclass(frozen=True)
class Change:
    """A decided change: the state and version to write, and what the change sets off."""

    state: BindingState
    version: int
    ended_reason: str | None

    @property
    def refunds_in_flight(self) -> bool:
        """Ending a binding refunds the transfers still in flight on it, whoever or whatever ended it."""
        return self.state == BindingState.ENDED

    @property
    def judged_for_fake_kinship(self) -> bool:
        """A binding becoming ACTIVE is counted by the many-givers-one-relative rule."""
        return self.state == BindingState.ACTIVE


def confirm(state: BindingState | str, version: int, *, relative_psn_no: str, psn_no: str) -> Change | None:
    """The relative consents. None when the binding is ACTIVE already (confirming twice is harmless)."""
    if relative_psn_no != psn_no:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding awaiting this person's consent")
    if state == BindingState.ACTIVE:
        return None
    if state != BindingState.PENDING_CONSENT:
        raise ApiError(422, "BINDING_NOT_PENDING", f"the binding is {state}")
    return Change(BindingState.ACTIVE, version + 1, None)


def end(state: BindingState | str, version: int, *, parties: tuple[str, str], psn_no: str,
        reason: str | None) -> Change | None:
    """A party ends the binding. None when it has ended already (ending twice answers the same)."""
    if psn_no not in parties:
        raise ApiError(404, "BINDING_NOT_FOUND", "no such binding for this person")
    return end_for(state, version, reason or UNBOUND)


def end_for(state: BindingState | str, version: int, reason: str) -> Change | None:
    """Ended by a fact about a party (their insurance ended, they moved region), or by a party themself."""
    if state == BindingState.ENDED:
        return None
    return Change(BindingState.ENDED, version + 1, reason)
