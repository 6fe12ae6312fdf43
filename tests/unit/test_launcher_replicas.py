"""`yibao up --replicas N --kafka-brokers 3`, the parts that need no broker or service: the port scheme, the
HAProxy config, the 3-node KRaft server.properties, the remembered shape, the environment of a replica, and the
CLI refusing bad input with exit 2 (non-zero for an unreachable database) before anything starts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from launcher import haproxy, kafka, state
from launcher.cli import app
from launcher.topology import (
    DEFAULT_PROVINCES,
    MAX_REPLICAS,
    Shape,
    broker_names,
    federation,
    public_services,
    replica_port,
)

PROVINCES = ["640000", "620000"]


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


# ------------------------------------------------------------------------------------------------ topology


def test_one_replica_keeps_todays_names_and_ports() -> None:
    specs = federation(PROVINCES, 1)
    assert [(s.name, s.port, s.replica) for s in specs] == [
        ("hub", 8000, 1), ("node-640000", 8640, 1), ("node-620000", 8620, 1), ("gateway", 8001, 1)]
    assert specs == federation(PROVINCES)


def test_replicas_are_named_and_ported_by_index() -> None:
    specs = federation(PROVINCES, 2)
    assert [(s.name, s.port) for s in specs] == [
        ("hub.1", 21000), ("hub.2", 22000), ("node-640000.1", 21640), ("node-640000.2", 22640),
        ("node-620000.1", 21620), ("node-620000.2", 22620), ("gateway.1", 21001), ("gateway.2", 22001)]
    assert {s.service for s in specs} == {"hub", "node-640000", "node-620000", "gateway"}
    assert all(s.db_instance == s.service.replace("-", "_") for s in specs), "replicas share their service's db"
    assert [s.public_port for s in specs if s.service == "hub"] == [8000, 8000]


def test_internal_ports_never_collide() -> None:
    every_province = [f"{code:02d}0000" for code in range(10, 100)]
    specs = federation(every_province, MAX_REPLICAS)
    ports = [s.port for s in specs]
    assert len(set(ports)) == len(ports)
    reserved = {s.port for s in public_services(every_province)} | {9092, 9093, 9094, 19092, 19093, 19094, 5432}
    assert not set(ports) & reserved
    assert min(ports) >= 21000 and max(ports) < 32768, "below Linux's ephemeral port range"
    with pytest.raises(ValueError):
        replica_port(9092, 1)


@pytest.mark.parametrize(("shape", "message"), [
    (Shape(0, 1), "at least 1"), (Shape(MAX_REPLICAS + 1, 1), "at most"),
    (Shape(1, 2), "1 or 3"), (Shape(1, 0), "1 or 3"), (Shape(1, 5), "1 or 3")])
def test_shape_validation(shape: Shape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        shape.validate()


def test_shape_is_remembered(tmp_path: Path) -> None:
    assert state.read_shape(tmp_path) is None
    assert state.current_shape(tmp_path) == Shape(1, 1)
    state.write_shape(tmp_path, Shape(2, 3))
    assert state.read_shape(tmp_path) == Shape(2, 3)
    (tmp_path / "shape.json").write_text('{"replicas": 2, "kafka_brokers": 2}')
    assert state.read_shape(tmp_path) is None, "an invalid remembered shape is no shape"


def test_bench_report_names_the_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("YIBAO_DATABASE_URL", raising=False)
    assert state.federation_shape_report(tmp_path) == {
        "backend": "sqlite", "replicas": 1, "kafka_brokers": 1, "kafka_bootstrap": "127.0.0.1:9092"}
    state.write_shape(tmp_path, Shape(2, 3))
    monkeypatch.setenv("YIBAO_DATABASE_URL", "postgresql+asyncpg://u:p@db/yibao")
    assert state.federation_shape_report(tmp_path) == {
        "backend": "postgresql", "replicas": 2, "kafka_brokers": 3,
        "kafka_bootstrap": "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"}


# ------------------------------------------------------------------------------------------------ env


def test_replica_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP", "YIBAO_KAFKA_REPLICATION_FACTOR", "YIBAO_KAFKA_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    node = next(s for s in federation(PROVINCES, 2) if s.name == "node-620000.2")
    env = state.service_env(node, tmp_path, PROVINCES, Shape(2, 3))
    assert env["YIBAO_HTTP_PORT"] == "22620"
    assert env["YIBAO_REPLICA_INDEX"] == "2"
    assert env["YIBAO_PROVINCE_ADMDVS"] == "620000"
    assert env["YIBAO_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"
    assert (env["YIBAO_KAFKA_REPLICATION_FACTOR"], env["YIBAO_KAFKA_MIN_INSYNC_REPLICAS"]) == ("3", "2")
    # Other services are reached on the public ports, where HAProxy answers for every replica.
    assert env["YIBAO_HUB_URL"] == "http://127.0.0.1:8000"
    assert "YIBAO_PROVINCE_URL_TEMPLATE" not in env or "{port}" in env["YIBAO_PROVINCE_URL_TEMPLATE"]
    single = state.service_env(federation(PROVINCES)[0], tmp_path, PROVINCES)
    assert (single["YIBAO_KAFKA_REPLICATION_FACTOR"], single["YIBAO_KAFKA_MIN_INSYNC_REPLICAS"]) == ("1", "1")
    assert single["YIBAO_REPLICA_INDEX"] == "1"


def test_replication_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("YIBAO_KAFKA_MIN_INSYNC_REPLICAS", "3")
    assert state.kafka_replication(3) == (3, 3)
    monkeypatch.setenv("YIBAO_KAFKA_MIN_INSYNC_REPLICAS", "4")
    with pytest.raises(state.UsageError, match="above the replication factor"):
        state.kafka_replication(3)
    monkeypatch.delenv("YIBAO_KAFKA_MIN_INSYNC_REPLICAS")
    monkeypatch.setenv("YIBAO_KAFKA_REPLICATION_FACTOR", "3")
    with pytest.raises(state.UsageError, match="needs at least 3 brokers"):
        state.kafka_replication(1)
    monkeypatch.setenv("YIBAO_KAFKA_REPLICATION_FACTOR", "two")
    with pytest.raises(state.UsageError, match="whole number"):
        state.kafka_replication(3)


def test_haproxy_and_brokers_are_matched_by_their_command() -> None:
    lb = state.PidRecord("haproxy", 1, 8000, "", "", module="/h/haproxy/haproxy.cfg")
    assert state.argv_matches(lb, ["/usr/sbin/haproxy", "-db", "-f", "/h/haproxy/haproxy.cfg"])
    assert not state.argv_matches(lb, ["/usr/sbin/haproxy", "-db", "-f", "/other/haproxy.cfg"])
    assert not state.argv_matches(lb, ["/usr/bin/python", "-m", "services.national_hub"])
    broker = state.PidRecord("kafka.2", 1, 9093, "", "")
    assert state.argv_matches(broker, ["/usr/bin/java", "-cp", "libs/*", "kafka.Kafka", "server.properties"])
    assert broker_names(1) == ["kafka"] and broker_names(3) == ["kafka.1", "kafka.2", "kafka.3"]


# ------------------------------------------------------------------------------------------------ haproxy


def test_haproxy_config_has_a_backend_per_service_with_every_replica() -> None:
    specs = federation(PROVINCES, 3)
    fronts = haproxy.frontends(public_services(PROVINCES), specs)
    text = haproxy.render_config(fronts)
    for front in fronts:
        assert f"frontend {front.name}\n    bind 127.0.0.1:{front.port}\n    default_backend {front.name}\n" in text
    assert [f.port for f in fronts] == [8000, 8640, 8620, 8001]
    for spec in specs:
        assert f"    server {spec.name} 127.0.0.1:{spec.port} check\n" in text
    backends = text.split("\nbackend ")[1:]
    assert len(backends) == 1 + len(PROVINCES) + 1
    for backend in backends:
        assert "balance roundrobin" in backend
        assert "option httpchk GET /readyz" in backend and "http-check expect status 200" in backend
        assert backend.count(" check\n") == 3
    for line in ("mode http", "option redispatch", "retries 3", "retry-on conn-failure", "option http-keep-alive",
                 "timeout connect", "timeout client", "timeout server", "timeout check", "http-reuse safe"):
        assert line in text
    assert "0.0.0.0" not in text, "the launcher's HAProxy listens on loopback only"
    assert "empty-response" not in text, "a request that reached a replica must not be sent again by HAProxy"


def test_haproxy_config_is_valid_for_haproxy(tmp_path: Path) -> None:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy not installed")
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(haproxy.render_config(haproxy.frontends(public_services(PROVINCES), federation(PROVINCES, 2))))
    result = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------------------------ kafka


@pytest.mark.parametrize("node_id", [1, 2, 3])
def test_server_properties_three_node_kraft(tmp_path: Path, node_id: int) -> None:
    props = _props(kafka.render_server_properties(tmp_path, node_id, 3))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == str(node_id)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19092,2@127.0.0.1:19093,3@127.0.0.1:19094"
    client, controller = 9091 + node_id, 19091 + node_id
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{client},CONTROLLER://127.0.0.1:{controller}"
    assert props["advertised.listeners"] == f"PLAINTEXT://127.0.0.1:{client}"
    assert props["log.dirs"] == str(tmp_path / "kafka" / f"broker-{node_id}" / "data")
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["min.insync.replicas"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["unclean.leader.election.enable"] == "false"
    assert props["auto.create.topics.enable"] == "false"


def test_single_broker_stays_where_it_was(tmp_path: Path) -> None:
    props = _props(kafka.render_server_properties(tmp_path))
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["min.insync.replicas"] == "1"
    assert props["unclean.leader.election.enable"] == "false"
    paths = state.StatePaths(tmp_path)
    assert paths.broker_properties(1, 1) == paths.server_properties


def test_topic_configs_and_partitions() -> None:
    from shared.contracts.topics import topic_partitions

    assert kafka.topic_configs(2) == {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
    assert all(count >= 12 for count in topic_partitions(list(DEFAULT_PROVINCES)).values())


def test_formatted_broker_count(tmp_path: Path) -> None:
    paths = state.StatePaths(tmp_path)
    assert kafka.formatted_broker_count(tmp_path) is None
    paths.broker_data(1, 1).mkdir(parents=True)
    (paths.broker_data(1, 1) / "meta.properties").write_text("cluster.id=abc\n")
    assert kafka.formatted_broker_count(tmp_path) == 1
    paths.broker_data(2, 3).mkdir(parents=True)
    (paths.broker_data(2, 3) / "meta.properties").write_text("cluster.id=xyz\n")
    assert kafka.formatted_broker_count(tmp_path) == 3


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("YIBAO_HOME", str(home))
    for name in ("YIBAO_DATABASE_URL", "KAFKA_BOOTSTRAP", "YIBAO_KAFKA_REPLICATION_FACTOR",
                 "YIBAO_KAFKA_MIN_INSYNC_REPLICAS"):
        monkeypatch.delenv(name, raising=False)
    return home


def _nothing_started(home: Path) -> bool:
    pids = home / "pids"
    return not (pids.is_dir() and any(pids.iterdir())) and not (home / "shape.json").exists()


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["--replicas", "0"], {}, 2, "at least 1"),
    (["--replicas", "10"], {}, 2, "at most 9"),
    (["--replicas", "2"], {}, 2, "YIBAO_DATABASE_URL"),
    (["--kafka-brokers", "2"], {}, 2, "1 or 3"),
    (["--kafka-brokers", "0"], {}, 2, "1 or 3"),
    (["--replicas", "2"], {"YIBAO_DATABASE_URL": "postgresql+asyncpg://x:y@127.0.0.1:1/none", "PATH": "EMPTY"},
     2, "apt-get install haproxy"),
    ([], {"YIBAO_DATABASE_URL": "postgresql+asyncpg://x:y@127.0.0.1:1/none"}, 1, "cannot be reached"),
    (["--replicas", "2", "--kafka-brokers", "3"], {"YIBAO_DATABASE_URL": "postgresql+asyncpg://x:y@127.0.0.1:1/none"},
     1, "cannot be reached"),
    ([], {"YIBAO_DATABASE_URL": "mysql://x:y@127.0.0.1/none"}, 2, "PostgreSQL URL"),
    (["--kafka-brokers", "3"], {"YIBAO_KAFKA_REPLICATION_FACTOR": "5"}, 2, "needs at least 5 brokers"),
])
def test_up_refuses_bad_input_before_starting_anything(
    cli_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str],
    code: int, message: str,
) -> None:
    for name, value in env.items():
        if name == "PATH":
            empty = tmp_path / "empty-bin"
            empty.mkdir()
            value = str(empty)
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(app, ["up", "--provinces", "640000", *args])
    assert result.exit_code == code, result.output
    assert message in " ".join(result.output.split()), result.output
    assert _nothing_started(cli_home)


def test_up_refuses_another_broker_count_on_existing_kafka_data(cli_home: Path) -> None:
    paths = state.ensure_layout(cli_home)
    (paths.broker_data(1, 1) / "meta.properties").write_text("cluster.id=abc\n")
    result = CliRunner().invoke(app, ["up", "--provinces", "640000", "--kafka-brokers", "3"])
    assert result.exit_code == 2, result.output
    assert "--fresh --kafka-brokers 3" in " ".join(result.output.split())
    assert _nothing_started(cli_home)


def test_remembered_replicas_still_need_postgres(cli_home: Path) -> None:
    state.ensure_layout(cli_home)
    state.write_shape(cli_home, Shape(2, 1))
    result = CliRunner().invoke(app, ["up", "--provinces", "640000"])
    assert result.exit_code == 2, result.output
    assert "remembered" in result.output
    assert not (cli_home / "pids").exists() or not any((cli_home / "pids").iterdir())


def test_status_json_lists_replicas_haproxy_and_brokers(cli_home: Path) -> None:
    state.ensure_layout(cli_home)
    state.write_shape(cli_home, Shape(2, 3))
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    names = [entry["name"] for entry in json.loads(result.output)]
    expected_services = [s.name for s in federation(list(DEFAULT_PROVINCES), 2)]
    assert names == [*expected_services, "haproxy", "kafka.1", "kafka.2", "kafka.3"]


def test_the_database_probe_goes_where_the_services_connect() -> None:
    """`yibao up` probes PostgreSQL before it starts anything: through the Unix socket a `?host=` names (where
    asyncpg under SQLAlchemy connects), not the loopback address the URL does not name."""
    from sqlalchemy.engine import make_url

    from launcher.supervisor import database_host

    assert database_host(make_url("postgresql+asyncpg://u:p@/yibao?host=/var/run/postgresql")) == "/var/run/postgresql"
    assert database_host(make_url("postgresql+asyncpg://u:p@db.example:5433/yibao")) == "db.example"
    assert database_host(make_url("postgresql+asyncpg://u:p@/yibao")) == "127.0.0.1"
