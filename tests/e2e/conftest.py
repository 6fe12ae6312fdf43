"""Fixtures of the POS end-to-end tests (tests/e2e/test_pos_*.py), per test module: an operator client, and
three registered, signed-in tills (two in Chengdu, one in Yinchuan) with the demo catalogue imported."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from launcher.client import FederationClient
from launcher.pos_client import DEMO_CATALOGUE
from tests.conftest import Federation
from tests.e2e.pos import Tills, new_till


@pytest.fixture(scope="module")
async def admin(federation: Federation) -> AsyncIterator[FederationClient]:
    api = federation.client()
    try:
        yield api
    finally:
        await api.aclose()


@pytest.fixture(scope="module")
async def tills(admin: FederationClient) -> AsyncIterator[Tills]:
    await admin.import_catalogue(DEMO_CATALOGUE)
    made = Tills(await new_till(admin, "成都康泰大药房", "510100"), await new_till(admin, "成都仁和药房", "510100"),
                 await new_till(admin, "银川新华药店", "640100"))
    try:
        yield made
    finally:
        for till in (made.chengdu, made.chengdu_other, made.yinchuan):
            await till.aclose()
