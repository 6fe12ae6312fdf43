"""/readyz of every service on the real federation: ready, and the consuming ones say how far behind they are
(the operator console's overview shows it)."""

from __future__ import annotations

import httpx

from launcher.client import FederationClient
from tests.conftest import Federation


async def test_readyz_reports_consumer_lag_where_there_is_a_consumer(federation: Federation) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for admdvs in federation.provinces:
            body = (await http.get(f"{FederationClient.node_url(admdvs)}/readyz")).json()
            assert body["status"] == "ready" and isinstance(body["consumer_lag"], int) and body["consumer_lag"] >= 0
        hub = (await http.get(f"{FederationClient.hub_url()}/readyz")).json()
        assert isinstance(hub["consumer_lag"], int)
        gateway = (await http.get(f"{FederationClient.gateway_url()}/readyz")).json()
        assert gateway == {"status": "ready"}  # the gateway consumes nothing
