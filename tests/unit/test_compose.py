"""docker-compose.yml describes the same federation as `yibao up --replicas 2 --kafka-brokers 3`: the services of
launcher.topology.federation(replicas=2) (compose names "hub-1" for the launcher's "hub.1"), with the same
modules, ports and the environment launcher.state.service_env gives them (container addresses instead of
127.0.0.1), PostgreSQL, a 3-broker KRaft cluster with the launcher's broker settings, the topics of
topic_partitions() with their partition counts and replication, and one HAProxy whose config is the launcher's
renderer's. Docker does not run here: the file is parsed and compared."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from launcher import haproxy
from launcher.kafka import render_server_properties
from launcher.state import kafka_replication, service_env
from launcher.topology import (
    DEFAULT_PROVINCES,
    GATEWAY_PORT,
    HUB_PORT,
    KAFKA_CONTROLLER_PORT,
    KAFKA_PORT,
    POLICY_ENV,
    ServiceSpec,
    Shape,
    federation,
    public_services,
)
from shared.contracts.topics import topic_partitions

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
HAPROXY_CFG = ROOT / "infra" / "haproxy" / "haproxy.cfg"
KAFKA_IMAGE = "apache/kafka:4.1.1"
BROKERS = 3
SHAPE = Shape(replicas=haproxy.COMPOSE_REPLICAS, kafka_brokers=BROKERS)
# Inside containers a service listens on every interface and reaches the others through HAProxy by name; the
# launcher leaves the province URL template at its 127.0.0.1 default and passes YIBAO_DATABASE_URL through from
# the shell, so only compose sets these.
EXTRA_ENV = {"YIBAO_PROVINCE_URL_TEMPLATE", "YIBAO_DATABASE_URL"}
SECRET_ENV = ("YIBAO_ID_HASH_KEY", "YIBAO_TOKEN_KEY", "YIBAO_INTERNAL_TOKEN", "YIBAO_OPERATOR_TOKEN")
SPECS = federation(DEFAULT_PROVINCES, SHAPE.replicas)
PUBLIC = public_services(DEFAULT_PROVINCES)


def _name(spec: ServiceSpec) -> str:
    return haproxy.compose_service_name(spec.name)


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
def launcher_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    """The YIBAO_* variables service_env gives each replica in compose's shape, from a clean environment (so
    that nothing set in the shell running the tests counts) with the pass-through policy knobs set."""
    home = tmp_path_factory.mktemp("yibao-home")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("YIBAO_") or n == "KAFKA_BOOTSTRAP"]:
            patch.delenv(name)
        for name in POLICY_ENV:
            patch.setenv(name, "set-in-the-shell")
        return {spec.name: {k: v for k, v in service_env(spec, home, list(DEFAULT_PROVINCES), SHAPE).items()
                            if k.startswith("YIBAO_")}
                for spec in SPECS}


def test_the_python_services_are_the_launchers_replicas(compose: dict[str, Any]) -> None:
    python_services = {name for name, service in compose["services"].items()
                       if _command(service)[:1] == ["python"]}
    assert python_services == {_name(spec) for spec in SPECS}
    assert {spec.service for spec in SPECS} >= {"hub", "gateway", *(f"node-{p}" for p in DEFAULT_PROVINCES)}
    assert all(sum(s.service == p.name for s in SPECS) == SHAPE.replicas for p in PUBLIC)


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_replica_matches_the_launcher(compose: dict[str, Any], spec: ServiceSpec) -> None:
    service = _service(compose, _name(spec))
    assert _command(service) == ["python", "-m", spec.module]
    assert "ports" not in service, "a replica publishes no host port: HAProxy does"
    assert "volumes" not in service, "a replica keeps no state of its own: it is in PostgreSQL"
    env = _env(service)
    # Each container has its own address, so every replica listens on its service's public port.
    assert env["YIBAO_HTTP_PORT"] == str(spec.public_port)
    assert env["YIBAO_HTTP_HOST"] == "0.0.0.0"
    assert env["YIBAO_REPLICA_INDEX"] == str(spec.replica)
    for name, value in spec.env.items():
        assert env[name] == value
    assert env.get("YIBAO_PROVINCE_ADMDVS") == spec.env.get("YIBAO_PROVINCE_ADMDVS")


@pytest.mark.parametrize("spec", SPECS, ids=[spec.name for spec in SPECS])
def test_service_env_is_the_launchers(compose: dict[str, Any], launcher_env: dict[str, dict[str, str]],
                                      spec: ServiceSpec) -> None:
    env = _env(_service(compose, _name(spec)))
    launcher = launcher_env[spec.name]
    assert set(env) <= set(launcher) | EXTRA_ENV, f"not given by the launcher: {set(env) - set(launcher) - EXTRA_ENV}"
    decided = set(launcher) - set(POLICY_ENV)  # what the launcher decides itself (policy knobs only pass through)
    assert set(env) >= decided, f"the launcher sets these and compose does not: {decided - set(env)}"
    assert env["YIBAO_KAFKA_BOOTSTRAP"] == ",".join(f"kafka-{n}:{KAFKA_PORT}" for n in range(1, BROKERS + 1))
    rf, min_isr = kafka_replication(BROKERS)
    assert (env["YIBAO_KAFKA_REPLICATION_FACTOR"], env["YIBAO_KAFKA_MIN_INSYNC_REPLICAS"]) == (str(rf), str(min_isr))
    assert (launcher["YIBAO_KAFKA_REPLICATION_FACTOR"], launcher["YIBAO_KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    assert env["YIBAO_HUB_URL"] == f"http://haproxy:{HUB_PORT}"
    assert env["YIBAO_PROVINCE_URL_TEMPLATE"] == "http://haproxy:{port}"
    assert env["YIBAO_PROVINCES"] == ",".join(DEFAULT_PROVINCES)
    assert str(env["YIBAO_DATABASE_URL"]).startswith("postgresql+asyncpg://yibao:${YIBAO_POSTGRES_PASSWORD:?")
    assert str(env["YIBAO_DATABASE_URL"]).endswith("@postgres:5432/yibao")
    for name in SECRET_ENV:  # no key in the file: compose refuses to start until each is given
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", str(env[name])), f"{name}: {env[name]!r}"
    for name in POLICY_ENV:  # passed through from the shell when set there, as `yibao up` does
        assert env.get(name, None) is None


def test_public_ports_are_haproxys_only(compose: dict[str, Any]) -> None:
    lb = _service(compose, "haproxy")
    assert lb["ports"] == [f"127.0.0.1:{spec.port}:{spec.port}" for spec in PUBLIC]
    assert "./infra/haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]
    published = {name for name, service in compose["services"].items() if service.get("ports")}
    assert published == {"haproxy"}


def test_haproxy_config_is_the_launchers_renderer() -> None:
    expected = haproxy.render_config(haproxy.compose_frontends(PUBLIC, SPECS), docker_dns=True)
    assert HAPROXY_CFG.read_text(encoding="utf-8") == expected, (
        "infra/haproxy/haproxy.cfg is stale: render it again with launcher/haproxy.py compose_frontends()")
    text = HAPROXY_CFG.read_text(encoding="utf-8")
    for spec in PUBLIC:
        assert f"bind 0.0.0.0:{spec.port}" in text
    for spec in SPECS:
        assert f"server {spec.name} {_name(spec)}:{spec.public_port} check" in text


def test_province_urls_resolve_to_haproxy_frontends(compose: dict[str, Any]) -> None:
    template = _env(_service(compose, "gateway-1"))["YIBAO_PROVINCE_URL_TEMPLATE"]
    published = {str(port).rsplit(":", 1)[1] for port in _service(compose, "haproxy")["ports"]}
    for spec in PUBLIC:
        if "YIBAO_PROVINCE_ADMDVS" in spec.env:
            url = template.format(admdvs=spec.env["YIBAO_PROVINCE_ADMDVS"], port=spec.port)
            assert url == f"http://haproxy:{spec.port}"
            assert str(spec.port) in published


def test_healthchecks_ask_readyz(compose: dict[str, Any]) -> None:
    for spec in SPECS:
        test = " ".join(str(part) for part in _service(compose, _name(spec))["healthcheck"]["test"])
        assert "/readyz" in test and "YIBAO_HTTP_PORT" in test, spec.name


def _depends(compose: dict[str, Any], name: str) -> dict[str, str]:
    depends = _service(compose, name).get("depends_on", {})
    assert isinstance(depends, dict), "depends_on with conditions"
    return {other: str(rule["condition"]) for other, rule in depends.items()}


def test_start_order_is_the_launchers(compose: dict[str, Any]) -> None:
    """PostgreSQL, Kafka and its topics first, then the hub (nodes register persons with it), the nodes, the
    gateway; replica n of a service once replica n-1 is healthy (no two migrations of one schema at once)."""
    assert _depends(compose, "kafka-init") == {f"kafka-{n}": "service_healthy" for n in range(1, BROKERS + 1)}
    infra = {"postgres": "service_healthy", "kafka-init": "service_completed_successfully",
             "haproxy": "service_started"}
    assert _depends(compose, "hub-1") == infra
    nodes = [f"node-{p}-1" for p in DEFAULT_PROVINCES]
    for node in nodes:
        assert _depends(compose, node) == {**infra, "hub-1": "service_healthy"}
    assert _depends(compose, "gateway-1") == {**infra, "hub-1": "service_healthy",
                                              **dict.fromkeys(nodes, "service_healthy")}
    for spec in SPECS:
        if spec.replica > 1:
            previous = f"{spec.service}-{spec.replica - 1}"
            assert _depends(compose, _name(spec)) == {previous: "service_healthy"}


def test_postgres_is_the_database(compose: dict[str, Any]) -> None:
    pg = _service(compose, "postgres")
    assert str(pg["image"]).startswith("postgres:15")
    env = _env(pg)
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == ("yibao", "yibao")
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert "postgres-data:/var/lib/postgresql/data" in pg["volumes"]


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


@pytest.mark.parametrize("node_id", range(1, BROKERS + 1))
def test_kafka_brokers_are_the_launchers_cluster(compose: dict[str, Any], tmp_path: Path, node_id: int) -> None:
    kafka = _service(compose, f"kafka-{node_id}")
    assert kafka["image"] == KAFKA_IMAGE
    env = {name: str(value) for name, value in _env(kafka).items()}
    assert env["KAFKA_NODE_ID"] == str(node_id)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    voters = ",".join(f"{n}@kafka-{n}:{KAFKA_CONTROLLER_PORT}" for n in range(1, BROKERS + 1))
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
    assert env["KAFKA_LISTENERS"] == f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{KAFKA_CONTROLLER_PORT}"
    assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka-{node_id}:{KAFKA_PORT}"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    # Every other broker setting is the launcher's server.properties for the same node of a 3-broker cluster.
    addressed = {"node.id", "controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs"}
    for key, value in _props(render_server_properties(tmp_path, node_id, BROKERS)).items():
        if key not in addressed:
            assert env["KAFKA_" + key.upper().replace(".", "_")] == value, key
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert f"kafka-{node_id}-data:/var/lib/kafka/data" in kafka["volumes"]
    assert str(KAFKA_PORT) in [str(port) for port in kafka.get("expose", [])]
    assert f"--bootstrap-server localhost:{KAFKA_PORT}" in " ".join(kafka["healthcheck"]["test"])


def test_kafka_init_creates_the_topics_replicated(compose: dict[str, Any]) -> None:
    init = _service(compose, "kafka-init")
    assert init["image"] == KAFKA_IMAGE
    script = "\n".join(str(part) for part in init["command"])
    creates = [line for line in script.splitlines() if "--create" in line]
    created = {topic: int(count) for line in creates
               for topic, count in re.findall(r"--topic (\S+) --partitions (\d+)", line)}
    assert created == topic_partitions(list(DEFAULT_PROVINCES))
    rf, min_isr = kafka_replication(BROKERS)
    for line in creates:
        assert "--bootstrap-server kafka-1:9092" in line
        assert f"--replication-factor {rf}" in line
        assert f"--config min.insync.replicas={min_isr}" in line
        assert "--config unclean.leader.election.enable=false" in line


def test_one_image_for_every_python_service(compose: dict[str, Any]) -> None:
    images = {_service(compose, _name(spec))["image"] for spec in SPECS}
    builds = [_service(compose, _name(spec))["build"] for spec in SPECS]
    assert len(images) == 1
    assert all(build == {"context": ".", "dockerfile": "Dockerfile"} for build in builds)


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    used = {str(v).split(":", 1)[0] for service in compose["services"].values() for v in service.get("volumes", [])
            if not str(v).startswith(".")}
    assert used == set(compose["volumes"])


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
    by_name = {spec.name: spec.port for spec in PUBLIC}
    assert (by_name["hub"], by_name["gateway"]) == (HUB_PORT, GATEWAY_PORT) == (8000, 8001)
