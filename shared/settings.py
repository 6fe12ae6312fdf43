"""Settings shared by every service. Each service subclasses `ServiceSettings` once (frozen) in its config.py;
values come from the environment the launcher (or docker-compose) sets, never from library defaults by accident."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


def province_node_port(admdvs: str) -> int:
    """The contract's port rule: 8000 + code/1000 (640000 -> 8640)."""
    return 8000 + int(admdvs) // 1000


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YIBAO_", frozen=True, extra="ignore")

    home: Path = Path(".yibao")
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # Empty: one SQLite file per service instance under `home`. Else a PostgreSQL server URL
    # (postgresql+asyncpg://user:pw@host:port/db); each service instance gets its own schema in it.
    database_url: str = ""
    db_schema_prefix: str = "yibao_"
    # PostgreSQL connections per process (every replica of every service holds this many: the server's
    # max_connections must cover them all).
    db_pool_size: int = 10
    kafka_bootstrap: str = "127.0.0.1:9092"
    # Topic replication as created by the launcher (and for any topic a service would create): the launcher sets
    # both from the cluster's shape (3 and 2 on the 3-broker cluster, 1 and 1 on one broker) unless the operator
    # set YIBAO_KAFKA_REPLICATION_FACTOR / YIBAO_KAFKA_MIN_INSYNC_REPLICAS.
    kafka_replication_factor: int = 1
    kafka_min_insync_replicas: int = 1
    # Which replica of its service this process is (1..N, `yibao up --replicas N`), so replicas can tell
    # themselves apart (e.g. in ids they mint).
    replica_index: int = 1
    # Keys the launcher generates once into home/secrets.json.
    id_hash_key: str = "dev-only-id-hash-key"
    token_key: str = "dev-only-token-key"
    internal_token: str = "dev-only-internal-token"
    operator_token: str = "dev-only-operator-token"
    hub_url: str = "http://127.0.0.1:8000"
    # How one service reaches a province node; `{admdvs}` and `{port}` are filled in.
    province_url_template: str = "http://127.0.0.1:{port}"
    clock_offset_s: float = 0.0
    log_level: str = "INFO"
    # How often each instance sends its audit journal's head to the hub (API.md: at least every 10 s).
    audit_checkpoint_interval_s: float = 5.0
    # Kafka and relay knobs, explicit so that nothing rides on a library default.
    kafka_linger_ms: int = 1
    kafka_request_timeout_ms: int = 30000
    # How long a consumer that died without leaving its group (SIGKILL, a lost machine) keeps its partitions
    # before the group hands them to another replica: their messages wait that long. 6 s is the broker's floor
    # (group.min.session.timeout.ms); heartbeats go every kafka_heartbeat_interval_ms, a third of it or less.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    # How long a rebalance waits for the live members to rejoin (aiokafka would take the session timeout).
    kafka_rebalance_timeout_ms: int = 10000
    consumer_max_records: int = 500
    # On PostgreSQL a batch's transaction holds the row locks of every account it credits until it commits,
    # while tills and other replicas wait for them: smaller batches there.
    consumer_max_records_postgres: int = 100
    # Tries of a failing consumer batch, then of each of its messages alone, before that message is parked as a
    # dead letter (shared/dead_letters.py) instead of freezing its partition.
    consumer_max_attempts: int = 3
    # How long a consumer remembers the id of a message it applied (the inbox), and how often it forgets older
    # ones: longer than Kafka keeps a record (7 days), so that no redelivery finds its id forgotten
    # (shared/dead_letters.py forget_old_inbox_ids). Raise it with the topics' retention.
    inbox_retention_s: float = 14 * 86_400.0
    inbox_retention_interval_s: float = 600.0
    # getmany() returns as soon as records arrive; the timeout only paces an idle loop.
    consumer_poll_timeout_ms: int = 500
    outbox_poll_interval_s: float = 0.5
    outbox_batch_size: int = 500
    # How long the relay lets messages gather after a commit wakes it: 0 where someone waits on the message
    # (transfers), more where nobody does (the gateway's clearing events), so one produce request and one
    # consumer transaction carry many.
    outbox_linger_s: float = 0.0
    internal_http_timeout_s: float = 5.0

    @property
    def id_hash_key_bytes(self) -> bytes:
        return self.id_hash_key.encode()

    def province_url(self, admdvs: str) -> str:
        return self.province_url_template.format(admdvs=admdvs, port=province_node_port(admdvs))
