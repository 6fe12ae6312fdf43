"""Fixtures of the contract tests: the same in-process federation as the integration tests' (its hub's routes
and its services' real serialisation are what the samples are checked against)."""

from __future__ import annotations

from tests.integration.conftest import fed, pg_fed

__all__ = ["fed", "pg_fed"]
