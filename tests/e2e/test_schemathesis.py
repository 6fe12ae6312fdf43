"""Schemathesis against the running federation (issue 13 point 5, API.md "Conventions": the OpenAPI document tells
the truth): the hub, a province node and the gateway, each through its own `/openapi.json`, with `--checks all`
in the coverage and fuzzing phases, deterministic (fixed seed, derandomized), failing on any finding.

What it covers is the API of ../shared/API.md, with the credentials its callers hold: the operator token on
`/v1/admin` and `/v1/ops`, a clerk's token (created through `POST /v1/admin/clerks`) on `/v1/counter`, the SMS
gateway's token on `/v1/sms/inbound`, and a signed-in citizen of the node's province (an employee, face sign-in) on
the rest of the node's `/v1`; sign-in itself goes without. Not `/internal/...`: the services' calls to each other
(internal token), which no outside client makes, are not fuzzed here (their contracts have their own tests).

Accepted answers to a schema-valid request (Schemathesis's `positive_data_acceptance`): its defaults (2xx, 3xx,
401, 403, 404, 409, 429; 5xx are the `not_a_server_error` check's) plus, per operation, each status the document
declares as a rule's refusal (`x-error-codes`, shared/openapi.py `refusal`). A valid request that a rule refuses
(an ID number whose check digit is wrong, a transfer above the daily limit, a binding whose kinship is not on
file: 422 with the rule's code) gets the right answer, and the document says so; a 422 for what the document only
calls "fails validation" is not accepted, so a constraint that validation enforces and the schema does not carry
is still a finding. The configuration is derived from the document under test, never written per route here.
Schemathesis's warnings that mean the run did not test what it should (credentials refused everywhere, ...) fail
it too; not "validation mismatch": a valid check digit is one draw in eleven, and no schema can carry it.

It runs last on its federation (`schemathesis` marker, tests/conftest.py): it signs in with made-up credentials
until the client address is throttled, and operator calls change risk rules, policies and people, which no other
test should meet. One federation is enough: what it checks is each service's HTTP surface and documents, the same on
SQLite and PostgreSQL (the database-specific paths have their own tests), and a run on each would double its cost
in CI (about 2 minutes each, on top of ~13).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.client import FederationClient
from launcher.people import new_person
from tests.conftest import Federation
from tests.e2e.flows import enrol, face_login

pytestmark = [pytest.mark.federation, pytest.mark.schemathesis]

NODE = "640000"
SEED = 20260513
# Per operation, at most this many generated requests in the fuzzing phase (the coverage phase derives its own
# from each schema: boundaries, each constraint broken once, wrong methods). With 50, about 2,900 requests over
# the three services take ~60 s here, 90 s with the federation's start: the test's budget is ~3 minutes.
MAX_EXAMPLES = 50


NOT_TESTED = "^/internal/"  # the services' calls to each other
FAILING_WARNINGS = ("missing_auth", "unmatched_filter", "base_url_mismatch",
                    "unsupported_regex", "unresolvable_reference", "method_not_allowed")


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string for what we write (ASCII, escapes)


def accepted_refusals(operation: dict[str, Any]) -> list[str]:
    """The statuses an operation declares for its rules' refusals (`x-error-codes`, shared/openapi.py refusal)."""
    return sorted(status for status, answer in operation.get("responses", {}).items() if "x-error-codes" in answer)


def config_for(document: dict[str, Any], tokens: dict[str, str | None]) -> str:
    """schemathesis.toml for one service: one `[[operations]]` table per operation of its document, with the
    bearer token its callers hold (the longest matching path prefix in `tokens`) and the statuses accepted for
    a valid request."""
    default_accepted = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
    lines = [f"seed = {SEED}", "", "[generation]", "deterministic = true", 'database = "none"', "",
             "[warnings]", f"fail-on = [{', '.join(_toml_string(w) for w in FAILING_WARNINGS)}]", ""]
    for path, methods in document["paths"].items():
        if re.match(NOT_TESTED, path):
            continue
        prefix = max((p for p in tokens if path.startswith(p)), key=len, default=None)
        token = tokens[prefix] if prefix is not None else None
        for method, operation in methods.items():
            accepted = sorted(set(default_accepted) | set(accepted_refusals(operation)))
            # One filter: include-path and include-method in one table would match either.
            lines += ["[[operations]]", f"include-name = {_toml_string(f'{method.upper()} {path}')}"]
            if token is not None:
                lines.append(f"headers = {{ Authorization = {_toml_string('Bearer ' + token)} }}")
            lines += ["[operations.checks.positive_data_acceptance]",
                      f"expected-statuses = [{', '.join(_toml_string(s) for s in accepted)}]", ""]
    return "\n".join(lines)


def run_schemathesis(name: str, base_url: str, tokens: dict[str, str | None], workdir: Path) -> None:
    document = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    config = workdir / f"{name}.schemathesis.toml"
    config.write_text(config_for(document, tokens), encoding="utf-8")
    # 60 s per request: at the end of the e2e session an audit verification replays every journal written so far.
    command = [str(Path(sys.executable).with_name("st")), "--config-file", str(config), "--no-color", "run",
               f"{base_url}/openapi.json", "--checks", "all", "--phases", "coverage,fuzzing",
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-deterministic",
               "--workers", "1", "--request-timeout", "60", "--exclude-path-regex", NOT_TESTED]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=workdir)
    output = result.stdout + result.stderr
    (workdir / f"{name}.out").write_text(output, encoding="utf-8")
    findings = output[output.find("=== FAILURES ==="):] if "=== FAILURES ===" in output else output
    assert result.returncode == 0, f"Schemathesis found problems in the {name}'s API:\n{findings[-30000:]}"


@pytest.fixture
async def credentials(client: FederationClient, federation: Federation) -> dict[str, str]:
    if federation.backend != "sqlite":
        pytest.skip("Schemathesis runs on the SQLite federation only (see the module's docstring)")
    citizen = new_person("640100")
    await enrol(client, citizen)
    session = await face_login(client, citizen)
    created = await client.http.post(f"{client.node_url(NODE)}/v1/admin/clerks",
                                     json={"clerk_id": f"C{uuid.uuid4().hex[:12]}", "name": "柜台测试"},
                                     headers={"authorization": f"Bearer {federation.operator_token}",
                                              "idempotency-key": uuid.uuid4().hex})
    assert created.status_code == 201, created.text
    return {"operator": federation.operator_token, "citizen": session.token, "clerk": created.json()["clerk_token"],
            "sms": (federation.home / "sms_inbound_token").read_text().strip()}


def test_schemathesis_finds_nothing(credentials: dict[str, str], tmp_path: Path) -> None:
    workdir = Path(os.environ.get("YIBAO_SCHEMATHESIS_DIR") or tmp_path)  # where each service's output stays
    workdir.mkdir(parents=True, exist_ok=True)
    operator = credentials["operator"]
    failures = []
    services: list[tuple[str, str, dict[str, str | None]]] = [
        ("hub", FederationClient.hub_url(), {
            "/v1/ops/": operator, "/v1/admin/": operator}),
        ("node", FederationClient.node_url(NODE), {
            "/v1/": credentials["citizen"], "/v1/admin/": operator, "/v1/counter/": credentials["clerk"],
            "/v1/sms/": credentials["sms"]}),
        ("gateway", FederationClient.gateway_url(), {"/v1/admin/": operator}),
    ]
    for name, base_url, tokens in services:
        try:
            run_schemathesis(name, base_url, tokens, workdir)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)
