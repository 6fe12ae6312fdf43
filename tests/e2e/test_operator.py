"""The operator API on the real federation: statistics, settlement windows (net positions sum to zero),
risk alerts and their resolution, and the operator token."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from launcher.client import FederationClient
from shared.clock import SHANGHAI
from tests.conftest import Federation
from tests.e2e.flows import bound_pair, send, wait_transfer

pytestmark = pytest.mark.federation


def operator(federation: Federation, key: bool = False) -> dict[str, str]:
    headers = {"authorization": f"Bearer {federation.operator_token}"}
    if key:
        headers["idempotency-key"] = uuid.uuid4().hex
    return headers


async def get(client: FederationClient, federation: Federation, path: str) -> Any:
    response = await client.http.get(f"{client.hub_url()}{path}", headers=operator(federation))
    assert response.status_code == 200, response.text
    return response.json()


async def test_stats_windows_and_alerts(federation: Federation, client: FederationClient) -> None:
    month = datetime.now(SHANGHAI).strftime("%Y-%m")
    before = await get(client, federation, f"/v1/ops/stats?from={month}&to={month}")
    # A brand-new binding that at once receives 1,500 yuan: the "new binding, large drain" rule.
    pair = await bound_pair(client, "640100", "620100")
    accepted = await send(client, pair, 150_000)
    assert (await wait_transfer(client, pair.giver_session, accepted["transfer_id"]))["state"] == "CREDITED"

    deadline = time.monotonic() + 10
    while True:
        after = await get(client, federation, f"/v1/ops/stats?from={month}&to={month}")
        if after["person_times"] == before["person_times"] + 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert after["amount_fen"] - before["amount_fen"] == 150_000
    row = next(r for r in after["rows"] if (r["from_admdvs"], r["to_admdvs"], r["use"]) == ("640000", "620000",
                                                                                              "transfer"))
    assert row["cross_region"] is True and row["month"] == month

    closed = await client.http.post(f"{client.hub_url()}/v1/ops/settlement-windows/current:close",
                                    headers=operator(federation, key=True))
    assert closed.status_code == 200, closed.text
    window = closed.json()
    assert window["sum_fen"] == 0 and sum(p["net_fen"] for p in window["net_by_province"]) == 0
    assert window["obligations"] >= 1
    windows = await get(client, federation, "/v1/ops/settlement-windows")
    assert windows[-1]["window_id"] == window["window_id"]

    alerts = await get(client, federation, "/v1/ops/alerts?state=OPEN")
    drain = [a for a in alerts if a["rule_id"] == "NEW_BINDING_LARGE_TRANSFER"
             and a["subject"].get("binding_id") == pair.binding_id]
    assert len(drain) == 1 and drain[0]["detail"]["amount_fen"] == 150_000
    resolved = await client.http.post(f"{client.hub_url()}/v1/ops/alerts/{drain[0]['alert_id']}:resolve",
                                      json={"decision": "dismiss", "reviewer": "e2e",
                                            "note": "called the giver: genuine"},
                                      headers=operator(federation, key=True))
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    still_open = await get(client, federation, "/v1/ops/alerts?state=OPEN")
    assert all(a["alert_id"] != drain[0]["alert_id"] for a in still_open)


async def test_operator_api_needs_the_operator_token(federation: Federation, client: FederationClient) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}):
        response = await client.http.get(f"{client.hub_url()}/v1/ops/alerts", headers=headers)
        assert response.status_code == 401
    bad = await client.http.get(f"{client.hub_url()}/v1/ops/stats?from=2026-13&to=2026-01",
                                headers=operator(federation))
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "INVALID_PERIOD")
    missing = await client.http.post(f"{client.hub_url()}/v1/ops/alerts/Anope:resolve", headers=operator(federation))
    assert missing.status_code == 404
