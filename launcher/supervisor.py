"""Start, stop and inspect the local federation: Kafka first, then the services of launcher.topology in order
(hub, nodes, gateway), each `python -m <module>` in its own session with its log under home/logs; with
--replicas N > 1 the N replicas of every service on internal ports, then HAProxy on the public ports.

The shape (replicas, Kafka brokers) is remembered in home/shape.json: `up` without --replicas/--kafka-brokers
uses it, and `status`, `down` and the benches read it.

`up` is idempotent: what already runs from this home (proven by pid file + cmdline) is kept, what is missing
is started, and it returns when every service answers /readyz. If it fails, it stops what this call started,
so a failed `up` leaves things as they were. `yibao up`/`down` and the tests all go through the functions
here."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from launcher import haproxy, kafka
from launcher.state import (
    HAPROXY_NAME,
    KAFKA_NAME,
    LaunchError,
    PidRecord,
    StatePaths,
    UsageError,
    current_shape,
    ensure_layout,
    external_kafka_bootstrap,
    is_broker_name,
    is_ours_and_alive,
    kafka_replication,
    load_or_create_secrets,
    log_tail,
    port_free,
    process_alive,
    read_pid_file,
    read_pid_files,
    read_shape,
    remove_pid_file,
    repo_root,
    resolve_operator_token,
    service_env,
    spawn_logged,
    stop_processes,
    tcp_answers,
    utc_now_iso,
    wipe_state,
    write_pid_file,
    write_shape,
)
from launcher.topology import (
    DEFAULT_PROVINCES,
    HOST,
    KAFKA_PORT,
    ServiceSpec,
    Shape,
    broker_names,
    broker_port,
    federation,
    public_services,
)
from shared.settings import ServiceSettings

log = logging.getLogger("yibao.launcher")

READY_TIMEOUT_S = 90.0
READY_POLL_INTERVAL_S = 0.2
# Per request: a service that is up answers /readyz in milliseconds; a slow answer just means "not yet".
READY_REQUEST_TIMEOUT_S = 1.0
HEALTH_TIMEOUT_S = 1.0
STOP_GRACE_S = 15.0


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    url: str
    alive: bool
    healthy: bool

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name, "pid": self.pid, "url": self.url, "alive": self.alive, "healthy": self.healthy
        }


# ---------------------------------------------------------------------------------------------------- queries


def _is_service_name(name: str) -> bool:
    return not is_broker_name(name) and name != HAPROXY_NAME


def running_services(home: Path) -> list[PidRecord]:
    """Service records (not Kafka, not HAProxy) whose process is alive and provably ours."""
    return [r for r in read_pid_files(home) if _is_service_name(r.name) and is_ours_and_alive(r)]


def running_provinces(home: Path) -> list[str] | None:
    """The provinces the running federation was started with, or None if no service of it runs."""
    for record in running_services(home):
        if record.provinces:
            return list(record.provinces)
    return None


def federation_status(home: Path) -> list[ServiceStatus]:
    """Every process of the running federation (or of the default one when nothing runs) in the home's shape:
    each service (or each replica `<service>.<n>`), HAProxy when replicated, and each Kafka broker."""
    provinces = running_provinces(home) or list(DEFAULT_PROVINCES)
    shape = current_shape(home)
    records = {r.name: r for r in read_pid_files(home)}
    statuses: list[ServiceStatus] = []
    with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
        for spec in federation(provinces, shape.replicas):
            record = records.get(spec.name)
            alive = record is not None and is_ours_and_alive(record)
            healthy = _get_ok(client, f"{spec.url}/healthz")
            pid = record.pid if record else None
            statuses.append(ServiceStatus(spec.name, pid, spec.url, alive, healthy))
        if shape.replicated:
            record = records.get(HAPROXY_NAME)
            public = public_services(provinces)
            # Healthy: every public port answers through it.
            healthy = all(_get_ok(client, f"{spec.url}/healthz") for spec in public)
            ports = ",".join(str(spec.port) for spec in public)
            statuses.append(ServiceStatus(HAPROXY_NAME, record.pid if record else None, f"http://{HOST}:{ports}",
                                          record is not None and is_ours_and_alive(record), healthy))
    external = external_kafka_bootstrap()
    if external is not None:
        statuses.append(ServiceStatus(KAFKA_NAME, None, external, _bootstrap_answers(external),
                                      _bootstrap_answers(external)))
        return statuses
    for node_id, name in enumerate(broker_names(shape.kafka_brokers), start=1):
        record = records.get(name)
        address = f"{HOST}:{broker_port(node_id)}"
        statuses.append(ServiceStatus(name, record.pid if record else None, address,
                                      record is not None and is_ours_and_alive(record), _bootstrap_answers(address)))
    return statuses


def _bootstrap_answers(bootstrap: str) -> bool:
    """Kafka has no /healthz: a TCP connect to the first bootstrap address is the cheap liveness check."""
    first = bootstrap.split(",")[0].strip()
    host, _, port = first.rpartition(":")
    try:
        return tcp_answers(host or HOST, int(port or KAFKA_PORT), HEALTH_TIMEOUT_S)
    except ValueError:
        return False


def _get_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------------------------------- up


def resolve_shape(home: Path, replicas: int | None, kafka_brokers: int | None, fresh: bool) -> Shape:
    """The shape this `up` starts: what is asked, else what the home remembers (unless --fresh, which forgets
    it with the rest of the state), else one process each and one broker. Checks everything that can be checked
    before anything starts; raises UsageError (exit 2) for what the operator must change."""
    remembered = None if fresh else read_shape(home)
    base = remembered or Shape()
    try:
        shape = Shape(replicas if replicas is not None else base.replicas,
                      kafka_brokers if kafka_brokers is not None else base.kafka_brokers).validate()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    kafka_replication(shape.kafka_brokers)  # a bad YIBAO_KAFKA_* replication setting fails here
    settings = ServiceSettings()
    if shape.replicated and not settings.database_url:
        source = "" if replicas is not None else f" (remembered in {home}/shape.json)"
        raise UsageError(
            f"--replicas {shape.replicas}{source} needs PostgreSQL: the replicas of a service share one database, "
            "and SQLite files cannot be shared between processes; set YIBAO_DATABASE_URL="
            "postgresql+asyncpg://user:password@host:5432/db, or use --replicas 1")
    if shape.replicated:
        haproxy.haproxy_binary()
    if settings.database_url:
        check_database(settings.database_url)
    if not fresh and remembered is not None and remembered != shape and running_services(home):
        raise UsageError(
            f"the federation running from {home} has --replicas {remembered.replicas} --kafka-brokers "
            f"{remembered.kafka_brokers}; run `yibao down` first to change its shape")
    return shape


def database_host(url: Any) -> str:
    """Where the services' driver connects for a parsed PostgreSQL URL: `?host=/var/run/postgresql` names the
    server's Unix socket directory (README "PostgreSQL"), which wins over the URL's host, as it does for asyncpg
    under SQLAlchemy; else the URL's host, else the loopback address."""
    socket_dir = url.query.get("host")
    return socket_dir if isinstance(socket_dir, str) else url.host or HOST


def check_database(database_url: str, timeout_s: float = 5.0) -> None:
    """A quick connect, so that an unreachable or misspelt PostgreSQL URL fails `up` before anything starts
    (instead of every service dying at startup)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception as exc:
        raise UsageError(f"YIBAO_DATABASE_URL is not a database URL: {exc}") from None
    if not url.drivername.startswith("postgresql"):
        raise UsageError(f"YIBAO_DATABASE_URL must be a PostgreSQL URL (postgresql+asyncpg://...), got "
                         f"{url.drivername}://")

    async def probe() -> None:
        conn = await asyncpg.connect(user=url.username, password=url.password, host=database_host(url),
                                     port=url.port or 5432, database=url.database, timeout=timeout_s)
        await conn.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), timeout_s + 1))
    except Exception as exc:
        shown = url.render_as_string(hide_password=True)
        raise LaunchError(f"PostgreSQL at {shown} cannot be reached ({type(exc).__name__}: {exc}); nothing "
                          "was started. Check YIBAO_DATABASE_URL and that the server runs.") from None


def start_federation(home: Path, provinces: list[str], fresh: bool, replicas: int | None = None,
                     kafka_brokers: int | None = None) -> Shape:
    """`yibao up`: Kafka, topics, then every service (replica) of federation(provinces, replicas), then HAProxy
    when replicated, returning when all answer /readyz. replicas / kafka_brokers: None means the home's
    remembered shape (else 1 and 1). fresh: stop whatever runs from this home and wipe its state (databases,
    Kafka data, logs, secrets, remembered shape; PostgreSQL schemas when YIBAO_DATABASE_URL is set) first.
    Returns the shape started. Raises LaunchError (UsageError: refused before anything started)."""
    home = home.resolve()
    provinces = list(dict.fromkeys(provinces))  # order kept, duplicates dropped: one node per province
    if not provinces:
        raise UsageError("at least one province is needed")
    shape = resolve_shape(home, replicas, kafka_brokers, fresh)
    if fresh:
        _fresh_start(home, provinces)
    elif (formatted := kafka.formatted_broker_count(home)) is not None and formatted != shape.kafka_brokers \
            and external_kafka_bootstrap() is None:
        raise UsageError(
            f"the Kafka data in {home} belongs to a {formatted}-broker cluster, not {shape.kafka_brokers}; "
            f"`yibao up --fresh --kafka-brokers {shape.kafka_brokers}` starts over (it wipes the state)")
    paths = ensure_layout(home)
    # Generate the secrets and operator token now, not halfway through starting services.
    load_or_create_secrets(home)
    resolve_operator_token(home)

    specs = federation(provinces, shape.replicas)
    already = _check_running_matches(home, provinces, specs)
    to_start = [spec for spec in specs if spec.name not in already]
    fronts = haproxy.frontends(public_services(provinces), specs) if shape.replicated else []
    if not to_start:
        log.info("the federation is already running from %s", home)
    # Fail fast on a taken port, before anything is started.
    kafka.check_kafka_ports(home, shape.kafka_brokers)
    for spec in to_start:
        _check_port(spec)
    haproxy.check_ports(home, fronts)
    write_shape(home, shape)

    started: list[PidRecord] = []
    brokers_started: list[str] = []
    haproxy_started = False
    try:
        brokers_started = kafka.ensure_kafka(home, provinces, shape.kafka_brokers)
        # Replica n of every service starts only once replica n-1 of it is ready: two replicas migrating one
        # schema at once would race on the DDL. The services of one round start together, as without replicas.
        for round_index in range(1, shape.replicas + 1):
            batch = [spec for spec in to_start if spec.replica == round_index]
            for spec in batch:
                started.append(_start_service(home, paths, spec, provinces, shape))
            wait_ready(home, batch, READY_TIMEOUT_S)
        wait_ready(home, specs, READY_TIMEOUT_S)
        if shape.replicated:
            haproxy_started = haproxy.start_haproxy(home, fronts)
            wait_ready_public(home, public_services(provinces), READY_TIMEOUT_S)
    except BaseException:
        # Leave things as they were before this `up`: stop only what it started. BaseException: a Ctrl-C
        # during the wait must not leave half a federation running detached.
        if haproxy_started:
            haproxy.stop_haproxy(home)
        if started:
            log.warning("stopping the services this `up` started")
            stop_processes(started, STOP_GRACE_S)
            for record in started:
                remove_pid_file(home, record.name)
        if brokers_started:
            kafka.stop_kafka(home, brokers_started)
        raise
    return shape


def _fresh_start(home: Path, provinces: list[str]) -> None:
    stop_federation(home)
    wipe_state(home)
    # Read like a service reads it, so YIBAO_DB_SCHEMA_PREFIX gives the same schema names.
    settings = ServiceSettings()
    if settings.database_url:
        _drop_schemas(settings, provinces)


def _drop_schemas(settings: ServiceSettings, provinces: list[str]) -> None:
    """PostgreSQL's counterpart of deleting the SQLite files: every schema of these provinces and of the
    default ones (so a previous run with other provinces leaves nothing behind either)."""
    # Imported here: shared.db pulls in SQLAlchemy, which only this rare path needs.
    from shared.db import drop_schemas, schema_name

    all_provinces = list(dict.fromkeys([*provinces, *DEFAULT_PROVINCES]))
    schemas = [schema_name(settings, spec.db_instance) for spec in public_services(all_provinces)]
    log.info("dropping PostgreSQL schemas: %s", ", ".join(schemas))
    try:
        asyncio.run(drop_schemas(settings.database_url, schemas))
    except Exception as exc:  # connection refused, auth, ...: the message is what the operator needs
        raise LaunchError(f"dropping the PostgreSQL schemas failed: {type(exc).__name__}: {exc}") from exc


def _check_running_matches(home: Path, provinces: list[str], specs: list[ServiceSpec]) -> set[str]:
    """Names of the requested services that already run. A federation running with other provinces is an
    error: its hub and gateway were told another province list, so mixing would give a lopsided federation."""
    wanted = {spec.name for spec in specs}
    running = running_services(home)
    for record in running:
        if record.name not in wanted or (record.provinces and list(record.provinces) != provinces):
            current = ",".join(record.provinces) or "?"
            raise LaunchError(
                f"a federation is already running from {home} with provinces {current} (process {record.name}); "
                f"run `yibao down` first, or `yibao up --fresh` to start over with {','.join(provinces)}"
            )
    # Records of dead (or recycled) pids are stale: drop them so status and down see only the truth.
    running_names = {r.name for r in running}
    for record in read_pid_files(home):
        if _is_service_name(record.name) and record.name not in running_names:
            remove_pid_file(home, record.name)
    return running_names


def _check_port(spec: ServiceSpec) -> None:
    if not port_free(spec.port):
        raise LaunchError(
            f"port {HOST}:{spec.port} (service {spec.name}) is already in use by a process this launcher did "
            "not start from this home; stop it first (`ss -ltnp` shows who holds it)"
        )


def _start_service(home: Path, paths: StatePaths, spec: ServiceSpec, provinces: list[str],
                   shape: Shape | None = None) -> PidRecord:
    _check_port(spec)  # again: the port may have been taken since the up-front check
    proc = spawn_logged(
        [sys.executable, "-m", spec.module],
        env=service_env(spec, home, provinces, shape or current_shape(home)),
        cwd=repo_root(),
        log_path=paths.log_file(spec.name),
    )
    record = PidRecord(
        name=spec.name,
        pid=proc.pid,
        port=spec.port,
        url=spec.url,
        started_at=utc_now_iso(),
        module=spec.module,
        provinces=tuple(provinces),
    )
    write_pid_file(home, record)
    log.info("started %s (pid %d) on %s", spec.name, proc.pid, spec.url)
    return record


def wait_ready(home: Path, specs: list[ServiceSpec], timeout_s: float) -> None:
    """Poll GET <url>/readyz until every service answers 200. A service whose process exits meanwhile fails
    the wait at once, with the end of its log."""
    paths = StatePaths(home)
    pending = {spec.name: spec for spec in specs}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=READY_REQUEST_TIMEOUT_S) as client:
        while pending:
            for name, spec in list(pending.items()):
                record = read_pid_file(paths.pid_file(name))
                if record is None or not process_alive(record.pid):
                    log_file = paths.log_file(name)
                    raise LaunchError(
                        f"service {name} exited during startup; last lines of {log_file}:\n"
                        f"{log_tail(log_file)}"
                    )
                if _get_ok(client, f"{spec.url}/readyz"):
                    log.info("%s is ready", name)
                    del pending[name]
            if not pending:
                return
            if time.monotonic() >= deadline:
                details = "\n\n".join(
                    f"== {name} ({paths.log_file(name)}):\n{log_tail(paths.log_file(name), 15)}"
                    for name in pending
                )
                raise LaunchError(
                    f"not ready after {timeout_s:.0f} s: {', '.join(pending)} "
                    f"(GET /readyz never returned 200)\n{details}"
                )
            time.sleep(READY_POLL_INTERVAL_S)


def wait_ready_public(home: Path, public: list[ServiceSpec], timeout_s: float) -> None:
    """With replicas: poll every public port (HAProxy) until /readyz answers 200 through it; HAProxy itself
    exiting fails the wait at once, with its log."""
    paths = StatePaths(home)
    pending = {spec.name: spec for spec in public}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=READY_REQUEST_TIMEOUT_S) as client:
        while pending:
            record = read_pid_file(paths.pid_file(HAPROXY_NAME))
            if record is None or not process_alive(record.pid):
                log_file = paths.log_file(HAPROXY_NAME)
                raise LaunchError(f"haproxy exited during startup; last lines of {log_file}:\n{log_tail(log_file)}")
            for name, spec in list(pending.items()):
                if _get_ok(client, f"{spec.url}/readyz"):
                    del pending[name]
            if not pending:
                log.info("every public port answers through haproxy")
                return
            if time.monotonic() >= deadline:
                raise LaunchError(f"not ready through haproxy after {timeout_s:.0f} s: {', '.join(pending)}")
            time.sleep(READY_POLL_INTERVAL_S)


# ---------------------------------------------------------------------------------------------------- down


def stop_federation(home: Path) -> None:
    """`yibao down`: stop every process named by a pid file of this home that is provably ours: HAProxy first
    (no new requests), then the services and replicas (they flush to Kafka on shutdown), the Kafka brokers last;
    remove the pid files."""
    home = home.resolve()
    haproxy.stop_haproxy(home)
    records = read_pid_files(home)
    services = [r for r in records if _is_service_name(r.name)]
    killed = stop_processes(services, STOP_GRACE_S)
    if killed:
        log.warning("had to kill: %s", ", ".join(killed))
    for record in services:
        remove_pid_file(home, record.name)
    kafka.stop_kafka(home)


# ---------------------------------------------------------------------------------------------- one service


def signal_service(home: Path, name: str, sig: int) -> None:
    """Send `sig` to one running service of this home (crash tests: SIGKILL between steps). Only a pid from
    our pid files that is provably ours is signalled."""
    record = read_pid_file(StatePaths(home.resolve()).pid_file(name))
    if record is None or not is_ours_and_alive(record):
        raise LaunchError(f"service {name} is not running from {home}")
    os.kill(record.pid, sig)
    deadline = time.monotonic() + STOP_GRACE_S
    while process_alive(record.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if process_alive(record.pid):
        raise LaunchError(f"service {name} (pid {record.pid}) did not stop")
    remove_pid_file(home.resolve(), name)


def restart_service(home: Path, name: str) -> None:
    """Start one stopped service again with the federation's provinces and wait until it is ready."""
    home = home.resolve()
    provinces = running_provinces(home)
    if not provinces:
        raise LaunchError(f"no federation is running from {home}")
    shape = current_shape(home)
    spec = next((s for s in federation(provinces, shape.replicas) if s.name == name), None)
    if spec is None:
        raise LaunchError(f"no service named {name} in this federation")
    _start_service(home, ensure_layout(home), spec, provinces, shape)
    wait_ready(home, [spec], READY_TIMEOUT_S)
