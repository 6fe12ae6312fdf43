"""Helpers of the in-process tests (tests/contract, tests/integration): the wire, the in-process federation,
and the stories told over it. Fixtures stay in the conftest files."""
