"""Shared fixtures. End-to-end tests run against the real federation (real Kafka, real databases) started
through the same launcher code as `yibao up`: once on SQLite, and once on PostgreSQL when
YIBAO_TEST_POSTGRES_URL names a server."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launcher import supervisor
from launcher.client import FederationClient

PROVINCES = ["640000", "620000", "610000", "350000"]
TEST_TRANSFER_TIMEOUT_S = 15

# Settings of the test federation: quiet hours off (CI may run at any hour; the rule has its own tests),
# a short transfer timeout so the refund-on-timeout path is exercised in seconds.
FEDERATION_ENV = {
    "YIBAO_TRANSFER_QUIET_HOURS": "",
    "YIBAO_TRANSFER_TIMEOUT_S": str(TEST_TRANSFER_TIMEOUT_S),
    "YIBAO_PASSWORD_HASH_ITERATIONS": "1000",
    "YIBAO_LOG_LEVEL": "INFO",
}


@dataclass
class Federation:
    home: Path
    backend: str
    operator_token: str
    internal_token: str
    provinces: list[str]

    def client(self) -> FederationClient:
        return FederationClient(self.operator_token)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Chaos tests start their own replicated federation on the same public ports as the shared `federation`
    fixture, which lives until the session ends: they run first, before it starts. The Schemathesis test runs last
    on its federation: it leaves the client address throttled and operator settings changed."""
    def order(item: pytest.Item) -> tuple[int, int, int]:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("federation") if callspec is not None else None
        return (0 if item.get_closest_marker("chaos") else 1,
                _backends().index(backend) if backend in _backends() else -1,
                1 if item.get_closest_marker("schemathesis") else 0)

    items.sort(key=order)


def _backends() -> list[str]:
    return ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=_backends())
def federation(request: pytest.FixtureRequest) -> Iterator[Federation]:
    backend: str = request.param
    postgres_url = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
    if backend == "postgres" and not postgres_url:
        pytest.skip("YIBAO_TEST_POSTGRES_URL not set: PostgreSQL run skipped (.ci/run sets it)")
    home = Path(tempfile.mkdtemp(prefix=f"yibao-e2e-{backend}-"))
    saved = dict(os.environ)
    os.environ.update(FEDERATION_ENV)
    os.environ.pop("KAFKA_BOOTSTRAP", None)
    if backend == "postgres":
        os.environ["YIBAO_DATABASE_URL"] = postgres_url
        os.environ["YIBAO_DB_SCHEMA_PREFIX"] = f"t{secrets.token_hex(3)}_"
    else:
        os.environ.pop("YIBAO_DATABASE_URL", None)
    kafka_libs = Path(os.environ.get("YIBAO_HOME", ".yibao")).resolve() / "kafka" / "libs"
    if kafka_libs.is_dir():
        # Reuse jars already fetched by `make install` instead of asking Maven again.
        shutil.copytree(kafka_libs, home / "kafka" / "libs")
    try:
        supervisor.start_federation(home, PROVINCES, fresh=True)
        secrets_file = json.loads((home / "secrets.json").read_text())
        yield Federation(home=home, backend=backend, operator_token=(home / "operator_token").read_text().strip(),
                         internal_token=secrets_file["internal_token"], provinces=PROVINCES)
    finally:
        supervisor.stop_federation(home)
        os.environ.clear()
        os.environ.update(saved)
        if not os.environ.get("YIBAO_E2E_KEEP_HOME"):  # set it to read the services' logs after a failure
            shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
async def client(federation: Federation) -> AsyncIterator[FederationClient]:
    api = federation.client()
    try:
        yield api
    finally:
        await api.aclose()
