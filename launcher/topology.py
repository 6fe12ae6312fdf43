"""The federation's shape, used by the launcher, docker-compose's test and the tests: which services run,
on which ports, with which module and environment. One place, so the three cannot drift apart.

Shape: `replicas` processes of every service and `kafka_brokers` brokers (1 or 3). With one replica each service
is one process on its public port, named as the contract names it ("hub", "node-640000"). With N > 1 each
service is N processes `<service>.<n>` (n from 1) on internal ports, and one HAProxy listens on the public
ports (launcher/haproxy.py).

Internal port of replica n of a service with public port P: 20000 + 1000·n + (P − 8000). Public ports are
8000 + 0..999 (hub 8000, gateway 8001, nodes 8000 + code/1000), so every (service, n) gets its own port:
n = 1 → 21000–21999, n = 2 → 22000–22999, … n = 9 → 29000–29999. That range is clear of the public ports,
of Kafka (9092–9094, controllers 19092–19094), of PostgreSQL (5432) and of Linux's ephemeral ports (from
32768), which is why N stops at 9."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from shared.settings import province_node_port

DEFAULT_PROVINCES = ("640000", "620000", "610000", "510000", "350000", "130000")
HUB_PORT = 8000
GATEWAY_PORT = 8001
# Client port of broker n is KAFKA_PORT + n - 1 (9092, 9093, 9094); its KRaft controller port is
# KAFKA_CONTROLLER_PORT + n - 1 (19092..19094), out of the client range so a 3-broker cluster fits.
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 19092
HOST = "127.0.0.1"

BROKER_COUNTS = (1, 3)  # 2 brokers cannot keep a KRaft quorum through the loss of one, so it is not offered
MAX_REPLICAS = 9
PUBLIC_PORT_BASE = 8000
INTERNAL_PORT_BASE = 20000
INTERNAL_PORT_STRIDE = 1000

# Policy knobs read at `up` and passed through to the services as they are: the contract's three, then the
# per-province overrides (JSON) and the provinces whose receivers must accept (services/province_node/config.py).
POLICY_ENV = ("YIBAO_TRANSFER_QUIET_HOURS", "YIBAO_TRANSFER_MAX_PER_DAY", "YIBAO_TRANSFER_MAX_FEN",
              "YIBAO_TRANSFER_OVERRIDES", "YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES")


@dataclass(frozen=True)
class Shape:
    """How many processes run: `replicas` of each service, `kafka_brokers` brokers."""

    replicas: int = 1
    kafka_brokers: int = 1

    def validate(self) -> Shape:
        if self.replicas < 1:
            raise ValueError(f"--replicas must be at least 1 (got {self.replicas})")
        if self.replicas > MAX_REPLICAS:
            raise ValueError(f"--replicas is at most {MAX_REPLICAS} (got {self.replicas}): the internal ports "
                             "of more replicas would reach the ephemeral port range")
        if self.kafka_brokers not in BROKER_COUNTS:
            raise ValueError(f"--kafka-brokers must be 1 or 3 (got {self.kafka_brokers}): a KRaft quorum of 2 "
                             "stops when either broker stops")
        return self

    @property
    def replicated(self) -> bool:
        return self.replicas > 1


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # "hub", "gateway", "node-640000"; with replicas "hub.1", "node-640000.2"
    module: str  # python -m <module>
    port: int  # where this process listens
    db_instance: str  # database file / schema name (shared by the replicas of a service)
    env: dict[str, str] = field(default_factory=dict)
    replica: int = 1  # YIBAO_REPLICA_INDEX
    public_port: int = 0  # the contract's port for this service (= port when not replicated)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def service(self) -> str:
        """The service this process is (a replica) of: "hub.2" -> "hub"."""
        return self.name.partition(".")[0]


def replica_port(public_port: int, replica: int) -> int:
    offset = public_port - PUBLIC_PORT_BASE
    if not 0 <= offset < INTERNAL_PORT_STRIDE:
        raise ValueError(f"public port {public_port} is outside {PUBLIC_PORT_BASE}..{PUBLIC_PORT_BASE + 999}")
    return INTERNAL_PORT_BASE + INTERNAL_PORT_STRIDE * replica + offset


def _public(provinces: tuple[str, ...] | list[str]) -> list[ServiceSpec]:
    specs = [ServiceSpec("hub", "services.national_hub", HUB_PORT, "hub", public_port=HUB_PORT)]
    for admdvs in provinces:
        port = province_node_port(admdvs)
        specs.append(ServiceSpec(f"node-{admdvs}", "services.province_node", port, f"node_{admdvs}",
                                 {"YIBAO_PROVINCE_ADMDVS": admdvs}, public_port=port))
    specs.append(ServiceSpec("gateway", "services.pharmacy_gateway", GATEWAY_PORT, "gateway",
                             public_port=GATEWAY_PORT))
    return specs


def federation(provinces: tuple[str, ...] | list[str] = DEFAULT_PROVINCES, replicas: int = 1) -> list[ServiceSpec]:
    """Hub first (nodes register persons with it), then the nodes, then the gateway. With replicas > 1, every
    service's replicas in turn (hub.1, hub.2, node-640000.1, ...), each on its internal port."""
    public = _public(provinces)
    if replicas <= 1:
        return public
    return [replace(spec, name=f"{spec.name}.{n}", port=replica_port(spec.public_port, n), replica=n)
            for spec in public for n in range(1, replicas + 1)]


def public_services(provinces: tuple[str, ...] | list[str] = DEFAULT_PROVINCES) -> list[ServiceSpec]:
    """One spec per service on its public port: what clients (and, with replicas, HAProxy's frontends) see."""
    return _public(provinces)


def broker_names(kafka_brokers: int) -> list[str]:
    """Pid-record and status names: "kafka" for the single broker (as always), "kafka.<n>" in a cluster."""
    if kafka_brokers == 1:
        return ["kafka"]
    return [f"kafka.{n}" for n in range(1, kafka_brokers + 1)]


def broker_port(node_id: int) -> int:
    return KAFKA_PORT + node_id - 1


def controller_port(node_id: int) -> int:
    return KAFKA_CONTROLLER_PORT + node_id - 1


def local_bootstrap(kafka_brokers: int) -> str:
    return ",".join(f"{HOST}:{broker_port(n)}" for n in range(1, kafka_brokers + 1))


def validate_province_code(code: str) -> str:
    if len(code) != 6 or not code.isdigit() or not code.endswith("0000"):
        raise ValueError(f"{code!r} is not a 6-digit province code such as 640000")
    return code
