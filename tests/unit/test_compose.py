"""docker-compose.yml describes the same federation as the launcher (issue 3 point 11): the services of
launcher.topology.federation() under the same names, ports and modules, the environment launcher.state.service_env
gives them (container addresses instead of 127.0.0.1), a single-node KRaft Kafka, and the topics of
topic_partitions() with their partition counts. Docker does not run here: the file is parsed and compared."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher.state import service_env
from launcher.topology import (
    DEFAULT_PROVINCES,
    GATEWAY_PORT,
    HUB_PORT,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    POLICY_ENV,
    ServiceSpec,
    federation,
)
from shared.contracts.topics import topic_partitions

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
KAFKA_IMAGE = "apache/kafka:4.1.1"
# Inside containers a service listens on every interface and reaches the others by service name; the launcher
# leaves the province URL template at its 127.0.0.1 default, so only compose sets it.
EXTRA_ENV = {"YIBAO_PROVINCE_URL_TEMPLATE"}
SECRET_ENV = ("YIBAO_ID_HASH_KEY", "YIBAO_TOKEN_KEY", "YIBAO_INTERNAL_TOKEN", "YIBAO_OPERATOR_TOKEN")
SPECS = federation()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service: dict[str, Any] = services[name]
    return service


def _env(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping, so that it can be compared"
    return env


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else [str(part) for part in command]


@pytest.fixture(scope="module")
def launcher_env_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """The YIBAO_* names service_env gives each service, from a clean environment (so that nothing set in the
    shell running the tests counts) with the pass-through policy knobs set."""
    home = tmp_path_factory.mktemp("yibao-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("YIBAO_") or n == "KAFKA_BOOTSTRAP"]:
            patch.delenv(name)
        for name in POLICY_ENV:
            patch.setenv(name, "set-in-the-shell")
        return {spec.name: {k for k in service_env(spec, home, list(DEFAULT_PROVINCES)) if k.startswith("YIBAO_")}
                for spec in SPECS}


def test_the_python_services_are_the_launchers(compose: dict[str, Any]) -> None:
    python_services = {name for name, service in compose["services"].items()
                       if _command(service)[:1] == ["python"]}
    assert python_services == {spec.name for spec in SPECS}
    assert {spec.name for spec in SPECS} >= {"hub", "gateway", *(f"node-{p}" for p in DEFAULT_PROVINCES)}


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_service_matches_the_launcher(compose: dict[str, Any], spec: ServiceSpec) -> None:
    service = _service(compose, spec.name)
    assert _command(service) == ["python", "-m", spec.module]
    assert service["ports"] == [f"127.0.0.1:{spec.port}:{spec.port}"], "published on loopback only, same port"
    env = _env(service)
    assert env["YIBAO_HTTP_PORT"] == str(spec.port)
    assert env["YIBAO_HTTP_HOST"] == "0.0.0.0"
    for name, value in spec.env.items():
        assert env[name] == value
    assert env.get("YIBAO_PROVINCE_ADMDVS") == spec.env.get("YIBAO_PROVINCE_ADMDVS")


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_service_env_is_the_launchers(compose: dict[str, Any], launcher_env_keys: dict[str, set[str]],
                                      spec: ServiceSpec) -> None:
    env = _env(_service(compose, spec.name))
    launcher = launcher_env_keys[spec.name]
    assert set(env) <= launcher | EXTRA_ENV, f"not given by the launcher: {set(env) - launcher - EXTRA_ENV}"
    decided = launcher - set(POLICY_ENV)  # what the launcher decides itself (policy knobs only pass through)
    assert set(env) >= decided, f"the launcher sets these and compose does not: {decided - set(env)}"
    assert env["YIBAO_KAFKA_BOOTSTRAP"] == f"kafka:{KAFKA_PORT}"
    assert env["YIBAO_HUB_URL"] == f"http://hub:{HUB_PORT}"
    assert env["YIBAO_PROVINCE_URL_TEMPLATE"] == "http://node-{admdvs}:{port}"
    assert env["YIBAO_PROVINCES"] == ",".join(DEFAULT_PROVINCES)
    for name in SECRET_ENV:  # no key in the file: compose refuses to start until each is given
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", str(env[name])), f"{name}: {env[name]!r}"
    for name in POLICY_ENV:  # passed through from the shell when set there, as `yibao up` does
        assert env.get(name, None) is None


def test_province_urls_resolve_to_the_node_services(compose: dict[str, Any]) -> None:
    template = _env(_service(compose, "gateway"))["YIBAO_PROVINCE_URL_TEMPLATE"]
    for spec in SPECS:
        if "YIBAO_PROVINCE_ADMDVS" in spec.env:
            admdvs = spec.env["YIBAO_PROVINCE_ADMDVS"]
            url = template.format(admdvs=admdvs, port=spec.port)
            assert url == f"http://{spec.name}:{spec.port}"


def test_healthchecks_ask_readyz(compose: dict[str, Any]) -> None:
    for spec in SPECS:
        test = " ".join(str(part) for part in _service(compose, spec.name)["healthcheck"]["test"])
        assert "/readyz" in test and "YIBAO_HTTP_PORT" in test, spec.name


def _depends(compose: dict[str, Any], name: str) -> dict[str, str]:
    depends = _service(compose, name).get("depends_on", {})
    assert isinstance(depends, dict), "depends_on with conditions"
    return {other: str(rule["condition"]) for other, rule in depends.items()}


def test_start_order_is_the_launchers(compose: dict[str, Any]) -> None:
    """Kafka and its topics first, then the hub (nodes register persons with it), the nodes, the gateway."""
    assert _depends(compose, "kafka-init") == {"kafka": "service_healthy"}
    assert _depends(compose, "hub") == {"kafka-init": "service_completed_successfully"}
    nodes = [spec.name for spec in SPECS if spec.name.startswith("node-")]
    for node in nodes:
        assert _depends(compose, node) == {"kafka-init": "service_completed_successfully", "hub": "service_healthy"}
    gateway = _depends(compose, "gateway")
    assert gateway == {"hub": "service_healthy", **dict.fromkeys(nodes, "service_healthy")}


def test_kafka_is_a_single_kraft_node(compose: dict[str, Any]) -> None:
    kafka = _service(compose, "kafka")
    assert kafka["image"] == KAFKA_IMAGE
    env = {name: str(value) for name, value in _env(kafka).items()}
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@kafka:{KAFKA_CONTROLLER_PORT}"
    assert env["KAFKA_LISTENERS"] == f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{KAFKA_CONTROLLER_PORT}"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka:{KAFKA_PORT}"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    # Same broker settings as the launcher's server.properties.
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert str(KAFKA_PORT) in [str(port) for port in kafka.get("expose", [])]
    assert f"--bootstrap-server localhost:{KAFKA_PORT}" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_init_creates_the_topics_with_their_partitions(compose: dict[str, Any]) -> None:
    init = _service(compose, "kafka-init")
    assert init["image"] == KAFKA_IMAGE
    script = "\n".join(str(part) for part in init["command"])
    created = {topic: int(count) for topic, count in
               re.findall(r"kafka-topics\.sh .*--topic (\S+) --partitions (\d+)", script)}
    assert created == topic_partitions(list(DEFAULT_PROVINCES))
    assert all(f"--bootstrap-server kafka:{KAFKA_PORT}" in line and "--replication-factor 1" in line
               for line in script.splitlines() if "kafka-topics.sh" in line)


def test_one_image_for_every_python_service(compose: dict[str, Any]) -> None:
    images = {_service(compose, spec.name)["image"] for spec in SPECS}
    builds = [_service(compose, spec.name)["build"] for spec in SPECS]
    assert len(images) == 1
    assert all(build == {"context": ".", "dockerfile": "Dockerfile"} for build in builds)


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_each_service_keeps_its_state_in_its_own_volume(compose: dict[str, Any]) -> None:
    volumes = [_service(compose, spec.name)["volumes"] for spec in SPECS]
    homes = {_env(_service(compose, spec.name))["YIBAO_HOME"] for spec in SPECS}
    assert len(homes) == 1
    (home,) = homes
    assert all(len(v) == 1 and v[0].endswith(f":{home}") for v in volumes)
    sources = [v[0].split(":", 1)[0] for v in volumes]
    assert len(set(sources)) == len(sources)
    assert set(sources) <= set(compose["volumes"])


def test_dockerfile_builds_on_python_311_with_the_lock_file() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases, "Dockerfile has no FROM"
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?(-slim)?(-\w+)?", base) for base in bases), bases
    assert "uv sync --frozen --no-dev" in text
    assert (ROOT / ".dockerignore").is_file()
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".venv", ".yibao", ".git"} <= set(ignored)


def test_gateway_and_hub_ports_are_the_contracts() -> None:
    by_name = {spec.name: spec.port for spec in SPECS}
    assert (by_name["hub"], by_name["gateway"]) == (HUB_PORT, GATEWAY_PORT) == (8000, 8001)
