"""Inbound messages by type: each consuming service declares one `EVENT_HANDLERS` registry (payload class → the
use case that applies it, in `service_layer/messages.py`), and this one dispatch runs it.

Each message is decoded and validated on its own, against the payload class its type names:
- before its batch is applied (`Inbox.problem`, called by the consumer loop's decode step, shared/kafka.py): a
  message of a known type whose payload fails its class never reaches a handler; it is parked at once as a dead
  letter with the reason (shared/dead_letters.py), its key waits behind it, and the rest of the batch goes on;
- again when it is applied (`dispatch`), so that a replayed dead letter or a caller without the loop is held to
  the same schema; a payload failing there raises `InvalidPayload`, whose text names the fields and never their
  values (dead letters are read by operators; payloads name persons).

A message of a type the service has no handler for is logged and skipped, as before (a type meant for someone
else, or one a newer producer added that this consumer does not act on)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from shared.contracts.envelope import Envelope
from shared.contracts.events import Payload
from shared.db import UnitOfWork

log = logging.getLogger("yibao.dispatch")

Ctx = TypeVar("Ctx")
P = TypeVar("P", bound=Payload)
MAX_PROBLEMS = 5


@dataclass(frozen=True, slots=True)
class EventHandler(Generic[Ctx]):
    """What a message of `payload.TYPE` is validated as, and the use case that applies it."""

    payload: type[Payload]
    apply: Callable[[Ctx, UnitOfWork, Envelope, Any], Awaitable[object]]


def on(payload: type[P], use_case: Callable[[Ctx, UnitOfWork, P], Awaitable[object]]) -> EventHandler[Ctx]:
    """A use case that takes the validated payload: `use_case(ctx, uow, payload)`."""

    async def apply(ctx: Ctx, uow: UnitOfWork, _env: Envelope, message: P) -> None:
        await use_case(ctx, uow, message)

    return EventHandler(payload, apply)


def on_envelope(payload: type[P],
                use_case: Callable[[Ctx, UnitOfWork, Envelope, P], Awaitable[object]]) -> EventHandler[Ctx]:
    """A use case that needs the envelope as well (its id, source or time): `use_case(ctx, uow, env, payload)`."""
    return EventHandler(payload, use_case)


EventHandlers = Mapping[str, EventHandler[Ctx]]


def event_handlers(*handlers: EventHandler[Ctx]) -> dict[str, EventHandler[Ctx]]:
    """The registry: message type → its handler, each type once."""
    registry: dict[str, EventHandler[Ctx]] = {}
    for handler in handlers:
        message_type = handler.payload.TYPE
        if message_type in registry:
            raise ValueError(f"two handlers for {message_type}")
        registry[message_type] = handler
    return registry


class InvalidPayload(Exception):
    """A message whose data fails the payload class of its type. The text names fields and what is wrong with
    them, never the values."""

    def __init__(self, message_type: str, problem: str) -> None:
        super().__init__(f"invalid {message_type} payload: {problem}")
        self.message_type = message_type
        self.problem = problem


def describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [f"{'.'.join(str(part) for part in error['loc']) or 'data'}: {error['msg']}"
             for error in errors[:MAX_PROBLEMS]]
    more = len(errors) - MAX_PROBLEMS
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _validated(handler: EventHandler[Any], env: Envelope) -> Payload:
    try:
        return handler.payload.model_validate(env.data)
    except ValidationError as exc:
        raise InvalidPayload(env.type, describe(exc)) from None
    except Exception as exc:  # a validator raising what pydantic does not wrap: still the message's fault
        raise InvalidPayload(env.type, f"{type(exc).__name__} while validating") from None


async def dispatch(handlers: EventHandlers[Ctx], ctx: Ctx, uow: UnitOfWork, envelopes: Sequence[Envelope]) -> None:
    """Apply each message, in order, in this unit of work, through the handler its type names."""
    for env in envelopes:
        handler = handlers.get(env.type)
        if handler is None:
            log.warning("ignoring message of unknown type %s", env.type)
            continue
        await handler.apply(ctx, uow, env, _validated(handler, env))


def problem(handlers: EventHandlers[Any], env: Envelope) -> str | None:
    """Why this message cannot be applied as its type says (its payload fails the class), or None."""
    handler = handlers.get(env.type)
    if handler is None:
        return None
    try:
        _validated(handler, env)
    except InvalidPayload as exc:
        return str(exc)
    return None


class Inbox(Generic[Ctx]):
    """A service's consumer side: its registry over its context, as the consumer loop's batch handler (and the
    dead-letter replay's), with the per-message check the loop runs while decoding."""

    def __init__(self, handlers: EventHandlers[Ctx], ctx: Ctx) -> None:
        self.handlers = handlers
        self.ctx = ctx

    async def __call__(self, uow: UnitOfWork, envelopes: list[Envelope]) -> None:
        await dispatch(self.handlers, self.ctx, uow, envelopes)

    def problem(self, env: Envelope) -> str | None:
        return problem(self.handlers, env)
