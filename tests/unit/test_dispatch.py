"""The inbound handler registry and its dispatch (shared/dispatch.py), and the hub's and the nodes' registries
(EVENT_HANDLERS in service_layer/messages.py): each message validated against the contract class its type names,
a bad payload refused with the fields named and no value shown, an unknown type skipped."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import pytest
from pydantic import field_validator

from services.national_hub.service_layer import messages as hub_messages
from services.province_node.service_layer import messages as node_messages
from shared.contracts.envelope import Envelope
from shared.contracts.events import EVENT_TYPES, Payload, PersonNotice, TransferSettled
from shared.db import UnitOfWork
from shared.dispatch import Inbox, InvalidPayload, dispatch, event_handlers, on, on_envelope, problem

UOW = cast(UnitOfWork, object())  # the handlers below never touch it
PSN_NO = "P64000019800101123X"


def envelope(message_type: str, data: dict[str, Any], message_id: str = "m1") -> Envelope:
    return Envelope(type=message_type, id=message_id, source="test", time=datetime(2025, 1, 15, tzinfo=UTC),
                    trace_id="t", data=data)


class Seen:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def notice(self, ctx: str, uow: UnitOfWork, msg: PersonNotice) -> None:
        assert uow is UOW
        self.calls.append((ctx, msg))

    async def settled(self, ctx: str, uow: UnitOfWork, env: Envelope, msg: TransferSettled) -> None:
        self.calls.append((ctx, (env.id, msg)))


def registry(seen: Seen) -> dict[str, Any]:
    return event_handlers(on(PersonNotice, seen.notice), on_envelope(TransferSettled, seen.settled))


async def test_each_message_goes_validated_to_the_handler_its_type_names_in_order() -> None:
    seen = Seen()
    await dispatch(registry(seen), "ctx", UOW, [
        envelope(PersonNotice.TYPE, {"psn_no": PSN_NO, "text": "您好"}, "m1"),
        envelope(TransferSettled.TYPE, {"transfer_id": "T1", "outcome": "CREDITED"}, "m2"),
    ])
    assert [call[0] for call in seen.calls] == ["ctx", "ctx"]
    notice, (env_id, settled) = seen.calls[0][1], seen.calls[1][1]
    assert isinstance(notice, PersonNotice) and notice.psn_no == PSN_NO
    assert env_id == "m2" and isinstance(settled, TransferSettled) and settled.transfer_id == "T1"


async def test_a_type_nobody_handles_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen()
    with caplog.at_level(logging.WARNING, logger="yibao.dispatch"):
        await dispatch(registry(seen), "ctx", UOW, [envelope("wallet.something-new.v9", {"x": 1})])
    assert seen.calls == []
    assert "ignoring message of unknown type wallet.something-new.v9" in caplog.text
    assert problem(registry(seen), envelope("wallet.something-new.v9", {"x": 1})) is None


async def test_a_known_type_with_a_bad_payload_is_refused_naming_fields_never_values() -> None:
    seen = Seen()
    bad = envelope(PersonNotice.TYPE, {"psn_no": PSN_NO, "text": ["not", "a", "string"]})
    with pytest.raises(InvalidPayload) as refused:
        await dispatch(registry(seen), "ctx", UOW, [bad])
    assert seen.calls == []
    assert str(refused.value).startswith(f"invalid {PersonNotice.TYPE} payload: text: ")
    assert PSN_NO not in str(refused.value) and "'not'" not in str(refused.value)
    found = problem(registry(seen), bad)
    assert found == str(refused.value)
    assert problem(registry(seen), envelope(PersonNotice.TYPE, {"psn_no": PSN_NO, "text": "ok"})) is None
    missing = problem(registry(seen), envelope(PersonNotice.TYPE, {}))
    assert missing is not None and "psn_no: Field required" in missing and "text: Field required" in missing


async def test_the_inbox_is_the_registry_over_one_context() -> None:
    seen = Seen()
    inbox = Inbox(registry(seen), "the context")
    await inbox(UOW, [envelope(PersonNotice.TYPE, {"psn_no": PSN_NO, "text": "您好"})])
    assert seen.calls[0][0] == "the context"
    assert inbox.problem(envelope(PersonNotice.TYPE, {"psn_no": 1})) is not None


def test_a_type_registered_twice_is_refused() -> None:
    seen = Seen()
    with pytest.raises(ValueError, match=PersonNotice.TYPE):
        event_handlers(on(PersonNotice, seen.notice), on(PersonNotice, seen.notice))


@pytest.mark.parametrize("handlers", [hub_messages.EVENT_HANDLERS, node_messages.EVENT_HANDLERS],
                         ids=["hub", "node"])
def test_the_services_registries_validate_with_the_contract_classes(handlers: dict[str, Any]) -> None:
    assert handlers, "a consuming service handles something"
    for message_type, handler in handlers.items():
        assert EVENT_TYPES.get(message_type) is handler.payload, message_type


def test_the_node_and_the_hub_each_handle_what_the_other_sends_them() -> None:
    assert {"wallet.transfer.credit.v1", "wallet.transfer.cancel.v1", "wallet.transfer.settled.v1",
            "wallet.binding.changed.v1", "wallet.person.notice.v1"} <= set(node_messages.EVENT_HANDLERS)
    assert {"wallet.transfer.requested.v1", "wallet.transfer.credit-result.v1"} <= set(hub_messages.EVENT_HANDLERS)


class Fussy(Payload):
    TYPE: ClassVar[str] = "test.fussy.v1"
    n: int

    @field_validator("n")
    @classmethod
    def _odd(cls, n: int) -> int:
        if n % 2 == 0:
            raise TypeError(f"{n} is even")  # not wrapped by pydantic
        return n


async def test_a_validator_failing_otherwise_is_still_a_problem_of_the_message_not_a_crash() -> None:
    async def keep(_ctx: str, _uow: UnitOfWork, _msg: Fussy) -> None:
        return None

    handlers = event_handlers(on(Fussy, keep))
    assert problem(handlers, envelope(Fussy.TYPE, {"n": 1})) is None
    found = problem(handlers, envelope(Fussy.TYPE, {"n": 2}))
    assert found == "invalid test.fussy.v1 payload: TypeError while validating"  # not "2 is even": no values
    with pytest.raises(InvalidPayload, match="TypeError while validating"):
        await dispatch(handlers, "ctx", UOW, [envelope(Fussy.TYPE, {"n": 2})])
