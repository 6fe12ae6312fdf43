"""Chaos on the real federation as it runs at scale: PostgreSQL, 2 replicas of every service behind HAProxy, a
3-broker KRaft cluster. Transfers and POS settles run while a random replica or broker is SIGKILLed and
started again, several times. Afterwards every ledger balances, nothing is left in flight, every transfer ended
credited once or refunded once, every settle answered 0 moved money once (those left in doubt were reversed by
2601, as a till does), and each person's balance is exactly what the answers imply.

It runs first in the session (tests/conftest.py orders it so), before the shared `federation` fixture takes
the public ports."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from launcher import bench, bench_pos, supervisor
from launcher.client import FederationClient
from launcher.kafka import running_brokers
from launcher.pos_client import Payer
from launcher.state import LaunchError, load_or_create_secrets, resolve_operator_token
from tests.conftest import FEDERATION_ENV

pytestmark = pytest.mark.chaos

GIVER, RECEIVER = "640000", "620000"
PROVINCES = [GIVER, RECEIVER]
GIVERS = 24
PAYERS = 12
LOAD_S = 50.0
KILLS = 5
TRANSFER_FEN = 1_00


@dataclass
class Ledger:
    """What the answers said: the truth the databases must match afterwards."""

    transfers: dict[str, tuple[bench.Giver, int]] = field(default_factory=dict)  # transfer_id -> giver, amount
    settles: bench_pos.LoadResult = field(default_factory=bench_pos.LoadResult)
    kills: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def scaled_federation() -> Iterator[tuple[Path, str]]:
    postgres_url = os.environ.get("YIBAO_TEST_POSTGRES_URL", "")
    if not postgres_url:
        pytest.skip("YIBAO_TEST_POSTGRES_URL not set: the replicated federation needs PostgreSQL (.ci/run sets it)")
    home = Path(tempfile.mkdtemp(prefix="yibao-chaos-"))
    saved = dict(os.environ)
    os.environ.update(FEDERATION_ENV)
    os.environ.update({"YIBAO_DATABASE_URL": postgres_url, "YIBAO_DB_SCHEMA_PREFIX": f"c{secrets.token_hex(3)}_",
                       "YIBAO_LOG_LEVEL": "WARNING"})
    os.environ.pop("KAFKA_BOOTSTRAP", None)
    kafka_libs = Path(saved.get("YIBAO_HOME", ".yibao")).resolve() / "kafka" / "libs"
    if kafka_libs.is_dir():
        shutil.copytree(kafka_libs, home / "kafka" / "libs")
    try:
        supervisor.start_federation(home, PROVINCES, fresh=True, replicas=2, kafka_brokers=3)
        yield home, resolve_operator_token(home)
    finally:
        supervisor.stop_federation(home)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(home, ignore_errors=True)


def _victims_by_kind(home: Path) -> list[list[str]]:
    """The processes a kill may hit, by kind: brokers, hub replicas, gateway replicas, node replicas."""
    replicas = [status.name for status in supervisor.federation_status(home) if "." in status.name
                and not status.name.startswith(("kafka", "haproxy"))]
    return [[record.name for record in running_brokers(home)],
            [name for name in replicas if name.startswith("hub.")],
            [name for name in replicas if name.startswith("gateway.")],
            [name for name in replicas if name.startswith("node-")]]


def _kill_and_restart(home: Path, victim: str) -> None:
    supervisor.signal_service(home, victim, signal.SIGKILL)
    time.sleep(random.uniform(1.0, 2.5))
    for attempt in range(3):  # `up` after a crash starts only what is missing; an operator runs it again if
        try:                   # it gave up while the cluster was still settling
            supervisor.start_federation(home, PROVINCES, fresh=False)
            return
        except LaunchError:
            if attempt == 2:
                raise
            time.sleep(2.0)


async def _chaos(home: Path, ledger: Ledger, stop: asyncio.Event) -> None:
    rng = random.Random()
    kinds = list(range(4))
    rng.shuffle(kinds)  # each kind (broker, hub, gateway, node) is hit at least once, in a random order
    for number in range(KILLS):
        await asyncio.sleep(rng.uniform(4.0, 7.0))
        victim = rng.choice(_victims_by_kind(home)[kinds[number % len(kinds)]])
        ledger.kills.append(victim)
        await asyncio.to_thread(_kill_and_restart, home, victim)
    stop.set()


async def _send_until_answered(client: FederationClient, giver: bench.Giver, ledger: Ledger,
                               stop_by: float) -> None:
    """One transfer, retried with its Idempotency-Key until some replica answers (a request in flight on a
    killed process may fail; its retry must not send twice)."""
    key = uuid.uuid4().hex
    while time.monotonic() < stop_by:
        try:
            response = await client.call(giver.session, "POST", "/v1/transfers",
                                         {"binding_id": giver.binding_id, "amount_fen": TRANSFER_FEN},
                                         idempotency_key=key)
        except Exception:
            await asyncio.sleep(0.2)
            continue
        if response.status_code >= 500:
            await asyncio.sleep(0.2)
            continue
        assert response.status_code == 202, response.text
        ledger.transfers[response.json()["transfer_id"]] = (giver, TRANSFER_FEN)
        return
    raise AssertionError("a transfer got no answer from any replica in time")


async def _transfer_load(client: FederationClient, givers: list[bench.Giver], ledger: Ledger,
                         stop: asyncio.Event) -> None:
    queue = [giver for _ in range(3) for giver in givers]  # three a day each (the policy's limit)
    while queue and not stop.is_set():
        await _send_until_answered(client, queue.pop(0), ledger, time.monotonic() + 60)
        await asyncio.sleep(LOAD_S / (3 * GIVERS))


async def _settle_load(lean: bench_pos.LeanTill, payers: list[Payer], ledger: Ledger,
                       stop: asyncio.Event) -> None:
    index = 0
    while not stop.is_set():
        # Every answer that is not infcode 0 is reversed afterwards (a refusal may come from a dying replica).
        await bench_pos.settle_once(lean, payers[index % len(payers)], ledger.settles, doubt_refusals=True)
        index += 1
        await asyncio.sleep(0.1)


async def _final_state(client: FederationClient, giver: bench.Giver, transfer_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            response = await client.call(giver.session, "GET", f"/v1/transfers/{transfer_id}")
            if response.status_code == 200 and response.json()["state"] in ("CREDITED", "REFUNDED"):
                return str(response.json()["state"])
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"transfer {transfer_id} never ended")


async def _personal_account_fen(client: FederationClient, session: Any) -> int:
    response = await client.call(session, "GET", "/v1/me")
    assert response.status_code == 200, response.text
    return int(response.json()["personal_account_fen"])


async def test_replicas_and_brokers_killed_under_load_lose_and_double_nothing(
        scaled_federation: tuple[Path, str]) -> None:
    home, operator_token = scaled_federation
    internal_token = load_or_create_secrets(home).internal_token
    console = Console(quiet=True)
    client = FederationClient(operator_token)
    ledger = Ledger()
    try:
        givers = await bench._setup(client, GIVER, RECEIVER, GIVERS, console)
        await bench._wait_bindings_replicated(client, givers)
        till, payers, _ = await bench_pos.prepare_till(client, client.gateway_url(), [GIVER],
                                                       PAYERS, console)
        balances_before = await bench_pos.account_balances_fen(till, payers)
        giver_pa_before = {g.person.id_no: await _personal_account_fen(client, g.session)
                           for g in givers}
        ledger_before = await bench._ledger_totals(client, PROVINCES, internal_token)

        stop = asyncio.Event()
        async with bench_pos.LeanTill(till, 4) as lean:
            await asyncio.gather(_chaos(home, ledger, stop), _transfer_load(client, givers, ledger, stop),
                                 _settle_load(lean, payers, ledger, stop))
        assert len(ledger.kills) == KILLS

        # Settles left in doubt by a kill: the till reverses them (2601), retried until some replica answers.
        for msgid, psn_no in ledger.settles.in_doubt:
            for _ in range(100):
                try:
                    answer = await till.reverse(msgid, "2102", psn_no)
                    if answer.get("infcode") == 0:
                        break
                except Exception:
                    pass
                await asyncio.sleep(0.3)
            else:
                raise AssertionError(f"2601 of {msgid} never answered")

        states = {tid: await _final_state(client, giver, tid) for tid, (giver, _) in ledger.transfers.items()}
        credited_by_giver: dict[str, int] = {}
        for tid, (giver, amount_fen) in ledger.transfers.items():
            if states[tid] == "CREDITED":
                credited_by_giver[giver.person.id_no] = credited_by_giver.get(giver.person.id_no, 0) + amount_fen
        for giver in givers:
            expected = giver_pa_before[giver.person.id_no] - credited_by_giver.get(giver.person.id_no, 0)
            assert await _personal_account_fen(client, giver.session) == expected, giver.person.name

        balances_after = await bench_pos.account_balances_fen(till, payers)
        assert bench_pos.accounts_match(balances_before, balances_after, ledger.settles), (
            "a settle answered 0 did not move money exactly once")

        after = await bench._ledger_totals(client, PROVINCES, internal_token)
        assert after["ledgers_balanced"], after
        assert after["in_flight_fen"] == 0, after
        # Citizens' money plus what is between provinces is conserved: transfers and settles only move it.
        assert after["held_fen"] == ledger_before["held_fen"], (after, ledger_before)
        credited = sum(1 for state in states.values() if state == "CREDITED")
        settled = sum(1 for _ in ledger.settles.acct_paid_fen)
        print(f"chaos: killed {ledger.kills}; {len(ledger.transfers)} transfers ({credited} credited); "
              f"{len(ledger.settles.latencies_ms)} settles sent, {len(ledger.settles.in_doubt)} in doubt, "
              f"refusals {dict(ledger.settles.refusals)}; payers charged: {settled}")
        assert len(ledger.transfers) >= 30 and credited > 0, "the load did not run"
        assert len(ledger.settles.latencies_ms) >= 100, "the settle load did not run"
    finally:
        await client.aclose()
