"""The federation's shape, used by the launcher, docker-compose's test and the tests: which services run,
on which ports, with which module and environment. One place, so the three cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.settings import province_node_port

DEFAULT_PROVINCES = ("640000", "620000", "610000", "510000", "350000")
HUB_PORT = 8000
GATEWAY_PORT = 8001
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
HOST = "127.0.0.1"

# Policy knobs read at `up` and passed through to the services as they are: the contract's three, then the
# per-province overrides (JSON) and the provinces whose receivers must accept (services/province_node/config.py).
POLICY_ENV = ("YIBAO_TRANSFER_QUIET_HOURS", "YIBAO_TRANSFER_MAX_PER_DAY", "YIBAO_TRANSFER_MAX_FEN",
              "YIBAO_TRANSFER_OVERRIDES", "YIBAO_TRANSFER_ACCEPT_REQUIRED_PROVINCES")


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # "hub", "gateway", "node-640000"
    module: str  # python -m <module>
    port: int
    db_instance: str  # database file / schema name
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def federation(provinces: tuple[str, ...] | list[str] = DEFAULT_PROVINCES) -> list[ServiceSpec]:
    """Hub first (nodes register persons with it), then the nodes, then the gateway."""
    specs = [ServiceSpec("hub", "services.national_hub", HUB_PORT, "hub")]
    for admdvs in provinces:
        specs.append(
            ServiceSpec(f"node-{admdvs}", "services.province_node", province_node_port(admdvs), f"node_{admdvs}",
                        {"YIBAO_PROVINCE_ADMDVS": admdvs})
        )
    specs.append(ServiceSpec("gateway", "services.pharmacy_gateway", GATEWAY_PORT, "gateway"))
    return specs


def validate_province_code(code: str) -> str:
    if len(code) != 6 or not code.isdigit() or not code.endswith("0000"):
        raise ValueError(f"{code!r} is not a 6-digit province code such as 640000")
    return code
