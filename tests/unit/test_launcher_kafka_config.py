"""The launcher's pure pieces: rendered Kafka config, secrets and operator token, province parsing, the env a
service gets, pid files and process matching, the --fresh wipe. No broker or service is started here."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from launcher import kafka, state
from launcher.cli import parse_provinces
from launcher.topology import federation


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    props = _props(kafka.render_server_properties(tmp_path))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19092"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:19092"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["offsets.topic.num.partitions"] == "6"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_log4j2_properties_console_and_quiet_kafka() -> None:
    props = _props(kafka.render_log4j2_properties())
    assert props["appender.console.type"] == "Console"
    assert props["rootLogger.level"] == "INFO"
    quiet = {props[k.replace(".level", ".name")]: v for k, v in props.items()
             if k.startswith("logger.") and k.endswith(".level")}
    assert quiet["kafka"] == "WARN"
    assert quiet["org.apache.kafka"] == "WARN"


def test_cluster_id_is_kafka_uuid_form() -> None:
    ids = {kafka.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_secrets_generated_once(tmp_path: Path) -> None:
    first = state.load_or_create_secrets(tmp_path)
    second = state.load_or_create_secrets(tmp_path)
    assert first == second
    assert len({first.id_hash_key, first.token_key, first.internal_token}) == 3
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600


def test_secrets_fill_only_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text('{"id_hash_key": "kept"}')
    loaded = state.load_or_create_secrets(tmp_path)
    assert loaded.id_hash_key == "kept"
    assert loaded.token_key and loaded.internal_token
    assert state.load_or_create_secrets(tmp_path) == loaded


def test_corrupt_secrets_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{not json")
    with pytest.raises(state.LaunchError, match=r"secrets\.json"):
        state.load_or_create_secrets(tmp_path)


def test_operator_token_stable_and_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YIBAO_OPERATOR_TOKEN", raising=False)
    generated = state.resolve_operator_token(tmp_path)
    assert len(generated) >= 32
    assert state.resolve_operator_token(tmp_path) == generated
    assert (tmp_path / "operator_token").read_text().strip() == generated
    assert stat.S_IMODE((tmp_path / "operator_token").stat().st_mode) == 0o600
    monkeypatch.setenv("YIBAO_OPERATOR_TOKEN", "from-env")
    assert state.resolve_operator_token(tmp_path) == "from-env"
    # The file holds the token in force, so readers of it never get a stale one.
    assert (tmp_path / "operator_token").read_text().strip() == "from-env"
    monkeypatch.delenv("YIBAO_OPERATOR_TOKEN")
    assert state.resolve_operator_token(tmp_path) == "from-env"


def test_parse_provinces() -> None:
    assert parse_provinces("640000,620000") == ["640000", "620000"]
    assert parse_provinces(" 640000, 620000 ,640000") == ["640000", "620000"]
    for bad in ("", ",", "64000", "640001", "abcdef", "640000,62000"):
        with pytest.raises(ValueError):
            parse_provinces(bad)


def test_service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("YIBAO_OPERATOR_TOKEN", raising=False)
    monkeypatch.setenv("YIBAO_TRANSFER_MAX_PER_DAY", "5")
    monkeypatch.setenv("YIBAO_DATABASE_URL", "postgresql+asyncpg://u:p@db/yibao")
    node = next(spec for spec in federation(["640000", "620000"]) if spec.name == "node-620000")
    env = state.service_env(node, tmp_path, ["640000", "620000"])
    keys = state.load_or_create_secrets(tmp_path)
    assert env["YIBAO_HOME"] == str(tmp_path.resolve())
    assert env["YIBAO_HTTP_PORT"] == "8620"
    assert env["YIBAO_HTTP_HOST"] == "127.0.0.1"
    assert env["YIBAO_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"
    assert env["YIBAO_ID_HASH_KEY"] == keys.id_hash_key
    assert env["YIBAO_TOKEN_KEY"] == keys.token_key
    assert env["YIBAO_INTERNAL_TOKEN"] == keys.internal_token
    assert env["YIBAO_OPERATOR_TOKEN"] == (tmp_path / "operator_token").read_text().strip()
    assert env["YIBAO_HUB_URL"] == "http://127.0.0.1:8000"
    assert env["YIBAO_PROVINCES"] == "640000,620000"
    assert env["YIBAO_PROVINCE_ADMDVS"] == "620000"
    assert env["YIBAO_TRANSFER_MAX_PER_DAY"] == "5"
    assert env["YIBAO_DATABASE_URL"] == "postgresql+asyncpg://u:p@db/yibao"

    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka:29092")
    assert state.service_env(node, tmp_path, ["640000"])["YIBAO_KAFKA_BOOTSTRAP"] == "kafka:29092"


def test_pid_file_round_trip_and_corrupt(tmp_path: Path) -> None:
    record = state.PidRecord("node-640000", 4242, 8640, "http://127.0.0.1:8640", "2025-01-01T00:00:00+00:00",
                             module="services.province_node", provinces=("640000", "620000"))
    state.write_pid_file(tmp_path, record)
    assert state.read_pid_files(tmp_path) == [record]
    (tmp_path / "pids" / "hub.pid").write_text("{garbage")
    assert state.read_pid_files(tmp_path) == [record]


def test_argv_matching_only_accepts_what_we_start() -> None:
    node = state.PidRecord("node-640000", 1, 8640, "", "", module="services.province_node")
    broker = state.PidRecord("kafka", 1, 9092, "", "")
    python = ["/work/main/.venv/bin/python", "-m"]
    assert state.argv_matches(node, [*python, "services.province_node"])
    assert not state.argv_matches(node, [*python, "services.national_hub"])
    assert not state.argv_matches(node, ["/usr/bin/vim", "services.province_node"])
    assert state.argv_matches(broker, ["/usr/bin/java", "-cp", "libs/*", "kafka.Kafka", "server.properties"])
    assert not state.argv_matches(broker, [*python, "services.province_node"])


def test_wipe_keeps_jars_and_refuses_foreign_dirs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = state.ensure_layout(home)
    (paths.kafka_libs / kafka.KAFKA_JAR).write_text("jar")
    (paths.kafka_data / "meta.properties").write_text("x")
    paths.server_properties.write_text("x")
    paths.log_file("hub").write_text("x")
    state.load_or_create_secrets(home)
    state.wipe_state(home)
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == [
        state.MARKER_NAME, "kafka", "kafka/libs", f"kafka/libs/{kafka.KAFKA_JAR}",
    ]

    foreign = tmp_path / "not-ours"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(state.LaunchError, match="refusing"):
        state.wipe_state(foreign)
    assert (foreign / "thesis.tex").exists()


def test_log_tail_shows_only_the_last_run(tmp_path: Path) -> None:
    log = tmp_path / "hub.log"
    log.write_text("--- yibao launcher starting 1: x\nold failure\n--- yibao launcher starting 2: x\nnew line\n")
    tail = state.log_tail(log)
    assert "new line" in tail
    assert "old failure" not in tail
