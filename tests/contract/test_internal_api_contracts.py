"""Internal HTTP contracts, node -> hub (issue 3 point 8): the bodies of /internal/v1 calls.

(a) every golden body sample parses with its schema and re-serialises to the same JSON;
(b) the node's real HubClient, driven by the node's real use cases, sends bodies the hub's routes accept, and
    the hub's answers parse with the schemas the node reads them with; every internal route of the hub has a
    request and a response sample, and each was exercised;
(c) a field unknown to the receiver (a newer caller or a newer hub) is ignored; a missing required field is a
    422 VALIDATION_ERROR that changes nothing."""

from __future__ import annotations

import copy
import re
from typing import Any, get_args, get_origin

import httpx
import pytest
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from services.national_hub.service_layer.bindings import BINDINGS as HUB_BINDINGS
from services.national_hub.service_layer.directory import DIRECTORY
from services.province_node.service_layer import bindings as node_bindings
from shared.contracts import internal_api
from shared.contracts.internal_api import (
    BindingActionRequest,
    BindingCreateRequest,
    BindingResponse,
    DirectoryRegistrationBatch,
    DirectoryRegistrationResult,
)
from shared.db import UnitOfWork
from tests.support.inprocess import DESTINATION, SOURCE, InProcessFederation
from tests.support.stories import active_binding, end_binding, family
from tests.support.wire import SAMPLES, key_tree, load_sample, naive_datetimes

# Each internal route of the hub: its request and response bodies, by golden sample (and the sample's schema).
ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/internal/v1/directory/persons"): ("internal.directory.persons.request.json",
                                                 "internal.directory.persons.response.json"),
    ("POST", "/internal/v1/bindings"): ("internal.bindings.create.request.json",
                                        "internal.bindings.create.response.json"),
    ("POST", "/internal/v1/bindings/{binding_id}:confirm"): ("internal.bindings.confirm.request.json",
                                                             "internal.bindings.confirm.response.json"),
    ("POST", "/internal/v1/bindings/{binding_id}:end"): ("internal.bindings.end.request.json",
                                                         "internal.bindings.end.response.json"),
}
SAMPLE_SCHEMAS: dict[str, type[BaseModel]] = {
    "internal.directory.persons.request.json": DirectoryRegistrationBatch,
    "internal.directory.persons.response.json": DirectoryRegistrationResult,
    "internal.bindings.create.request.json": BindingCreateRequest,
    "internal.bindings.create.response.json": BindingResponse,
    "internal.bindings.confirm.request.json": BindingActionRequest,
    "internal.bindings.confirm.response.json": BindingResponse,
    "internal.bindings.end.request.json": BindingActionRequest,
    "internal.bindings.end.response.json": BindingResponse,
}
REQUEST_SAMPLES = sorted({request for request, _ in ROUTES.values()})


def _route_of(method: str, path: str) -> tuple[str, str]:
    for route_method, template in ROUTES:
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/:]+", re.escape(template)) + "$"
        if method == route_method and re.match(pattern, path):
            return route_method, template
    raise AssertionError(f"{method} {path} is an internal call without a contract sample")


def _required_paths(value: Any, model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (keys, list indexes) of required fields present in a sample body."""
    paths: list[tuple[Any, ...]] = []
    for name, info in model.model_fields.items():
        if info.is_required():
            paths.append((*prefix, name))
        inner = info.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths.extend(_required_paths(value[name], inner, (*prefix, name)))
        elif get_origin(inner) is list:
            (item,) = get_args(inner)
            if isinstance(item, type) and issubclass(item, BaseModel) and value[name]:
                paths.extend(_required_paths(value[name][0], item, (*prefix, name, 0)))
    return paths


MISSING_FIELD_CASES = [(name, path) for name in REQUEST_SAMPLES
                       for path in _required_paths(load_sample(name), SAMPLE_SCHEMAS[name])]


def _without(body: Any, path: tuple[Any, ...]) -> Any:
    trimmed = copy.deepcopy(body)
    holder = trimmed
    for step in path[:-1]:
        holder = holder[step]
    del holder[path[-1]]
    return trimmed


# ------------------------------------------------------------------------------------------ (a)


@pytest.mark.parametrize("name", sorted(SAMPLE_SCHEMAS))
def test_internal_sample_round_trips(name: str) -> None:
    raw = load_sample(name)
    parsed = SAMPLE_SCHEMAS[name].model_validate(raw)
    assert parsed.model_dump(mode="json") == raw
    assert not naive_datetimes(parsed)


def _hub_internal_operations(fed: InProcessFederation) -> dict[tuple[str, str], dict[str, Any]]:
    """From the hub's OpenAPI document, which lists every route however the routers were included."""
    paths: dict[str, dict[str, Any]] = fed.hub_app.openapi()["paths"]
    return {(method.upper(), path): operation for path, operations in paths.items() if path.startswith("/internal/")
            for method, operation in operations.items()}


def _conventional_samples(path: str) -> tuple[str, str]:
    """/internal/v1/directory/lookup -> internal.directory.lookup.{request,response}.json: how a route added
    later (and its own tests) gets its golden samples without an entry in ROUTES."""
    parts = [part for part in re.split(r"[/:]", path.removeprefix("/internal/v1/")) if part and "{" not in part]
    base = ".".join(["internal", *parts])
    return f"{base}.request.json", f"{base}.response.json"


def _samples_of(route: tuple[str, str]) -> tuple[str, str] | None:
    if route in ROUTES:
        return ROUTES[route]
    request, response = _conventional_samples(route[1])
    return (request, response) if (SAMPLES / request).is_file() and (SAMPLES / response).is_file() else None


def _schema_named(ref: dict[str, Any] | None) -> type[BaseModel] | None:
    name = ref["$ref"].rsplit("/", 1)[-1] if ref and "$ref" in ref else None
    found = getattr(internal_api, name, None) if name else None
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def test_every_internal_route_of_the_hub_has_samples(fed: InProcessFederation) -> None:
    missing = {route for route in _hub_internal_operations(fed) if _samples_of(route) is None}
    expected = {route: _conventional_samples(route[1]) for route in missing}
    assert not missing, f"internal routes without golden request/response samples: add {expected}"
    assert set(ROUTES) <= set(_hub_internal_operations(fed)), "ROUTES names a route the hub no longer has"


def test_samples_are_of_the_schemas_each_route_reads_and_answers(fed: InProcessFederation) -> None:
    for route, operation in _hub_internal_operations(fed).items():
        samples = _samples_of(route)
        if samples is None:
            continue  # reported by test_every_internal_route_of_the_hub_has_samples
        request = _schema_named(operation["requestBody"]["content"]["application/json"]["schema"])
        answer = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
        response = _schema_named(answer.get("schema"))
        if route in ROUTES:
            assert request is SAMPLE_SCHEMAS[samples[0]], route
            assert response in (None, SAMPLE_SCHEMAS[samples[1]]), route
        for schema, sample in ((request, samples[0]), (response, samples[1])):
            if schema is not None:
                raw = load_sample(sample)
                assert schema.model_validate(raw).model_dump(mode="json") == raw, sample


# ------------------------------------------------------------------------------------------ (b)


async def _exercise_every_route(fed: InProcessFederation) -> str:
    """Persons import (directory), binding create, confirm and end: the node's use cases, over HubClient."""
    giver, mother = await family(fed)
    binding_id = await active_binding(fed, giver, mother)
    await end_binding(fed, mother, binding_id)  # the relative may end it too
    await fed.pump()
    return binding_id


async def test_node_requests_are_accepted_and_hub_answers_understood(fed: InProcessFederation) -> None:
    binding_id = await _exercise_every_route(fed)
    used = set()
    for exchange in fed.exchanges:
        route = _route_of(exchange.method, exchange.path)
        used.add(route)
        request_sample, response_sample = ROUTES[route]
        assert 200 <= exchange.status < 300, exchange
        for body, sample in ((exchange.request_json, request_sample), (exchange.response_json, response_sample)):
            parsed = SAMPLE_SCHEMAS[sample].model_validate(body)
            assert not naive_datetimes(parsed)
            assert key_tree(body) == key_tree(load_sample(sample)), f"{route}: body differs from {sample}"
    assert used == set(ROUTES), f"not exercised: {set(ROUTES) - used}"
    async with UnitOfWork(fed.hub.db) as uow:
        registry = (await uow.execute(sa.select(HUB_BINDINGS).where(HUB_BINDINGS.c.binding_id == binding_id))).one()
        registered = (await uow.execute(sa.select(sa.func.count()).select_from(DIRECTORY))).scalar()
    assert (registry.state, registry.version, registry.ended_reason) == ("ENDED", 3, "UNBOUND")
    assert registered == 2


async def test_unknown_fields_both_ways_are_ignored(fed: InProcessFederation) -> None:
    fed.transport.add_unknown_fields = True
    binding_id = await _exercise_every_route(fed)
    assert fed.exchanges and all("x_added_later" in e.request_json for e in fed.exchanges)
    assert all(200 <= e.status < 300 for e in fed.exchanges)
    for admdvs in (SOURCE, DESTINATION):
        async with UnitOfWork(fed.node(admdvs).db) as uow:
            row = (await uow.execute(sa.select(node_bindings.BINDINGS.c.state).where(
                node_bindings.BINDINGS.c.binding_id == binding_id))).one()
        assert row.state == "ENDED"


def _internal_client(fed: InProcessFederation) -> httpx.AsyncClient:
    token = fed.hub.settings.internal_token
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=fed.hub_app), base_url="http://hub.contract-test",
                             headers={"authorization": f"Bearer {token}"})


def _path_for(template: str) -> str:
    return template.replace("{binding_id}", "B" + "0" * 32)


@pytest.mark.parametrize(("name", "path"), MISSING_FIELD_CASES,
                         ids=[f"{n}:{'.'.join(map(str, p))}" for n, p in MISSING_FIELD_CASES])
async def test_missing_required_field_is_a_422_that_changes_nothing(fed: InProcessFederation, name: str,
                                                                     path: tuple[Any, ...]) -> None:
    [(method, template)] = [route for route, (request, _) in ROUTES.items() if request == name]
    async with _internal_client(fed) as client:
        response = await client.request(method, _path_for(template), json=_without(load_sample(name), path))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    with pytest.raises(ValidationError):
        SAMPLE_SCHEMAS[name].model_validate(_without(load_sample(name), path))
    async with UnitOfWork(fed.hub.db) as uow:
        assert (await uow.execute(sa.select(DIRECTORY))).first() is None
        assert (await uow.execute(sa.select(HUB_BINDINGS))).first() is None


async def test_directory_sample_with_unknown_fields_is_registered(fed: InProcessFederation) -> None:
    body = load_sample("internal.directory.persons.request.json")
    for person in body["persons"]:
        person["x_added_later"] = True
    body["x_added_later"] = "too"
    async with _internal_client(fed) as client:
        response = await client.post("/internal/v1/directory/persons", json=body)
    assert response.status_code == 200, response.text
    assert DirectoryRegistrationResult.model_validate(response.json()).registered == 2


@pytest.mark.parametrize("name", sorted({response for _, response in ROUTES.values()}))
def test_response_missing_a_required_field_is_refused_by_the_node(name: str) -> None:
    sample = load_sample(name)
    for path in _required_paths(sample, SAMPLE_SCHEMAS[name]):
        with pytest.raises(ValidationError):
            SAMPLE_SCHEMAS[name].model_validate(_without(sample, path))
