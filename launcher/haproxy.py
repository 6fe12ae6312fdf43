"""HAProxy in front of the replicas (`yibao up --replicas N`, N > 1): one process, one frontend per service on
its public port (127.0.0.1 only), one backend per service with a server per replica, round robin, health-checked
with GET /readyz. The config is rendered here, for the launcher (into home/haproxy/haproxy.cfg) and for
docker-compose (infra/haproxy/haproxy.cfg, checked by tests/unit/test_compose.py), so the two cannot drift.

HAProxy runs in the foreground (-db) as a child of nobody, like the services: its pid is the pid we record,
and its log (stdout) goes to logs/haproxy.log."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from launcher.state import (
    HAPROXY_NAME,
    LaunchError,
    PidRecord,
    StatePaths,
    UsageError,
    is_ours_and_alive,
    port_free,
    read_pid_file,
    remove_pid_file,
    spawn_logged,
    stop_processes,
    utc_now_iso,
    write_pid_file,
)
from launcher.topology import HOST, ServiceSpec

log = logging.getLogger("yibao.launcher")

INSTALL_HINT = "install it with `apt-get install haproxy` (Debian's package; `make install` does it as root)"
STOP_GRACE_S = 5.0
# Timeouts. connect: a replica on this machine accepts in microseconds, so 1 s means it is gone (then redispatch
# to another). server: above the services' own slowest answer (internal calls time out at 5 s, a POS settle
# that waits for another province stays well under 30 s). client/keep-alive: long-lived POS tills and the
# benches' keep-alive pools.
TIMEOUTS = {
    "connect": "1s",
    "client": "60s",
    "server": "60s",
    "http-request": "10s",
    "http-keep-alive": "60s",
    "queue": "5s",
    # A dead replica refuses the check's connection at once; a saturated one may take a while to answer
    # /readyz (its database pool is busy): it stays in the rotation rather than all replicas dropping out under
    # load, which answered 503 to everyone (seen in the 2-replica bench).
    "check": "5s",
}
# A connection refused by a dead replica is retried (on another server, `option redispatch`): nothing was sent,
# so this is safe for POSTs too. A request already sent to a replica that then died is NOT retried here (it may
# have taken effect); the client's retry with its Idempotency-Key / msgid does that safely.
RETRIES = 3
CHECK_INTERVAL = "1s"  # a killed replica leaves the rotation within 2 checks; a new one joins after 2


@dataclass(frozen=True)
class Server:
    name: str  # "hub.1"
    host: str
    port: int


@dataclass(frozen=True)
class Frontend:
    name: str  # "hub", "node-640000"
    bind_host: str
    port: int
    servers: tuple[Server, ...]


def frontends(public: list[ServiceSpec], replicas: list[ServiceSpec], bind_host: str = HOST) -> list[Frontend]:
    """One frontend per public service with a server for each of its replicas (matched by service name)."""
    result = []
    for spec in public:
        servers = tuple(Server(r.name, HOST, r.port) for r in replicas if r.service == spec.name)
        result.append(Frontend(spec.name, bind_host, spec.public_port or spec.port, servers))
    return result


COMPOSE_REPLICAS = 2  # docker-compose.yml's shape: two of each service behind one HAProxy


def compose_service_name(name: str) -> str:
    """docker-compose service (and host) name of a replica: "hub.1" -> "hub-1" (a dot would read as a domain)."""
    return name.replace(".", "-")


def compose_frontends(public: list[ServiceSpec], replicas: list[ServiceSpec]) -> list[Frontend]:
    """The frontends of docker-compose.yml's HAProxy: every interface in its container, each replica by its
    compose service name on the service's public port (each container has its own address)."""
    result = []
    for spec in public:
        servers = tuple(Server(r.name, compose_service_name(r.name), spec.port)
                        for r in replicas if r.service == spec.name)
        result.append(Frontend(spec.name, "0.0.0.0", spec.port, servers))
    return result


def render_config(fronts: list[Frontend], *, docker_dns: bool = False) -> str:
    """haproxy.cfg for these frontends. docker_dns: server addresses are compose service names, resolved by
    Docker's DNS at run time (a replica not up yet must not stop HAProxy from starting)."""
    header = ("# docker-compose.yml's HAProxy, rendered by launcher/haproxy.py render_config(compose_frontends(...));\n"
              "# tests/unit/test_compose.py checks that it still matches." if docker_dns else
              "# Written by the yibao launcher (launcher/haproxy.py) at every `up`; edits are overwritten.")
    lines = [
        header,
        "global",
        # Server state changes (a replica going down or up) at notice; no per-request log.
        "    log stdout format raw local0 notice",
        # Needs about 2 file descriptors per connection (client and server side): 4096 stays well under the
        # usual hard limits, and is far above what the tills and benches of one machine open.
        "    maxconn 4096",
        "",
    ]
    if docker_dns:
        lines += [
            "resolvers docker",
            "    nameserver dns 127.0.0.11:53",
            "    hold valid 10s",
            "",
        ]
    lines += [
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        # Keep-alive on both sides, and backend connections reused across client requests (safe: only for
        # requests after the first of a client connection, so a connection's first request never lands on a
        # connection the server may be closing).
        "    option http-keep-alive",
        "    http-reuse safe",
        # The client's address for the services (uvicorn reads X-Forwarded-For only when told to trust us).
        "    option forwardfor",
        f"    retries {RETRIES}",
        "    retry-on conn-failure",
        "    option redispatch 1",
        *(f"    timeout {name} {value}" for name, value in TIMEOUTS.items()),
        "",
    ]
    for front in fronts:
        lines += [
            f"frontend {front.name}",
            f"    bind {front.bind_host}:{front.port}",
            f"    default_backend {front.name}",
            "",
            f"backend {front.name}",
            "    balance roundrobin",
            "    option httpchk GET /readyz",
            "    http-check expect status 200",
            f"    default-server inter {CHECK_INTERVAL} fall 2 rise 2"
            + (" resolvers docker init-addr libc,none" if docker_dns else ""),
        ]
        lines += [f"    server {s.name} {s.host}:{s.port} check" for s in front.servers]
        lines.append("")
    return "\n".join(lines)


def haproxy_binary() -> str:
    binary = shutil.which("haproxy")
    if binary is None:
        raise UsageError(f"--replicas above 1 runs HAProxy in front of the replicas, and `haproxy` is not on PATH; "
                         f"{INSTALL_HINT}")
    return binary


def running_haproxy(home: Path) -> PidRecord | None:
    record = read_pid_file(StatePaths(home).pid_file(HAPROXY_NAME))
    if record is not None and is_ours_and_alive(record):
        return record
    return None


def check_ports(home: Path, fronts: list[Frontend]) -> None:
    if running_haproxy(home) is not None:
        return
    for front in fronts:
        if not port_free(front.port):
            raise LaunchError(
                f"port {HOST}:{front.port} (HAProxy frontend of {front.name}) is already in use by a process this "
                f"launcher did not start from {home}; stop it first (`ss -ltnp` shows who holds it)")


def write_config(home: Path, fronts: list[Frontend]) -> Path:
    path = StatePaths(home).haproxy_cfg
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(fronts), encoding="utf-8")
    return path


def start_haproxy(home: Path, fronts: list[Frontend]) -> bool:
    """Start HAProxy with a freshly rendered config unless ours already runs. True if started now."""
    paths = StatePaths(home)
    if running_haproxy(home) is not None:
        # The config depends only on the shape and provinces, which cannot change while the federation runs.
        return False
    remove_pid_file(home, HAPROXY_NAME)
    binary = haproxy_binary()
    cfg = write_config(home, fronts)
    check = subprocess.run([binary, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise LaunchError(f"HAProxy refused {cfg} (exit {check.returncode}):\n{(check.stdout + check.stderr)[-3000:]}")
    check_ports(home, fronts)
    proc = spawn_logged([binary, "-db", "-f", str(cfg)], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                        cwd=paths.haproxy_dir, log_path=paths.log_file(HAPROXY_NAME))
    ports = ",".join(str(f.port) for f in fronts)
    record = PidRecord(name=HAPROXY_NAME, pid=proc.pid, port=fronts[0].port if fronts else 0,
                       url=f"http://{HOST}:{ports}", started_at=utc_now_iso(), module=str(cfg))
    write_pid_file(home, record)
    log.info("started haproxy (pid %d) on %s:%s", proc.pid, HOST, ports)
    return True


def stop_haproxy(home: Path) -> None:
    record = read_pid_file(StatePaths(home).pid_file(HAPROXY_NAME))
    if record is not None:
        stop_processes([record], STOP_GRACE_S)
    remove_pid_file(home, HAPROXY_NAME)
