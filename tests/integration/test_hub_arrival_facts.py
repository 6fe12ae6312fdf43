"""What the hub reads when a transfer arrives (transfer_repo.arrival_facts: one statement where there were
three), on each backend: the transfer's state if it arrived before, its binding (None when the hub has none),
and the transfers the frequency rule counts, only those accepted within the window, the giver's and the
receiver's each on their own."""

from __future__ import annotations

from datetime import timedelta

from services.national_hub.adapters import binding_repo, transfer_repo
from services.national_hub.adapters.binding_repo import BindingRow
from services.national_hub.adapters.transfer_repo import HubTransferRow
from services.national_hub.domain.binding_lifecycle import BindingState
from services.national_hub.domain.transfer_state import TransferState
from shared.db import UnitOfWork
from tests.support.inprocess import InProcessFederation

GIVER, RECEIVER, OTHER = "6400000000000001", "6200000000000001", "6200000000000002"


async def test_state_binding_and_the_counts_in_the_window(any_fed: InProcessFederation) -> None:
    fed = any_fed
    now = fed.clock.now()

    def row(transfer_id: str, receiver: str, minutes_ago: int) -> HubTransferRow:
        accepted_at = now - timedelta(minutes=minutes_ago)
        return HubTransferRow(
            transfer_id=transfer_id, binding_id="B-none", giver_psn_no=GIVER, giver_admdvs="640000",
            receiver_psn_no=receiver, receiver_admdvs="620000", amount_fen=100, state=TransferState.ROUTED,
            reason=None, accepted_at=accepted_at, routed_at=accepted_at, deadline_at=now + timedelta(hours=1),
            decided_at=None)

    binding = BindingRow(
        binding_id="B-1", request_key="K-1", giver_psn_no=GIVER, giver_admdvs="640000", relative_psn_no=OTHER,
        relative_admdvs="620000", relative_name_masked="*梅", relation="parent", state=BindingState.ACTIVE,
        version=1, created_at=now, updated_at=now, ended_reason=None)
    async with UnitOfWork(fed.hub.db) as uow:
        await binding_repo.add(uow, binding)
        for transfer in (row("T-in-1", RECEIVER, 5), row("T-in-2", OTHER, 10), row("T-before", RECEIVER, 90)):
            await transfer_repo.add(uow, transfer)
        await uow.commit()
    async with UnitOfWork(fed.hub.db) as uow:
        known = await transfer_repo.arrival_facts(
            uow, transfer_id="T-in-1", binding_id="B-none", giver_psn_no=GIVER, receiver_psn_no=RECEIVER,
            since=now - timedelta(hours=1), until=now)
        new = await transfer_repo.arrival_facts(
            uow, transfer_id="T-new", binding_id="B-1", giver_psn_no=GIVER, receiver_psn_no=OTHER,
            since=now - timedelta(minutes=7), until=now)
    assert known.known_state == TransferState.ROUTED and known.binding is None
    assert (known.from_giver, known.to_receiver) == (2, 1)  # T-before is older than the window
    assert new.known_state is None and new.binding == binding and (new.from_giver, new.to_receiver) == (1, 0)
