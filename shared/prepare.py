"""A use case's prepare step, run outside its unit of work (shared/idempotency.py `run_idempotent`), when the step
is lazy: the use case runs first with NOT_PREPARED and raises PrepareFirst only when it needs what the step
gives. Here, not in shared/idempotency.py, so that service layers need not import the web entrypoint's module."""

from __future__ import annotations

from typing import Any


class PrepareFirst(Exception):
    """Raised inside the unit of work by a use case run before its (lazy) prepare step, when it finds it needs
    what that step gives: the unit of work rolls back, the step runs, and the use case runs again with its
    result."""


class _NotPrepared:
    """What a use case with a lazy prepare step gets until it raises PrepareFirst."""

    def __repr__(self) -> str:
        return "NOT_PREPARED"


NOT_PREPARED: Any = _NotPrepared()
