"""A real Apache Kafka, in KRaft mode, run straight from the jars pinned by infra/kafka/pom.xml: no distribution
tarball, no shell scripts. One broker by default; `yibao up --kafka-brokers 3` runs a 3-broker cluster in which
every node is broker and controller (the controller quorum is the three), on 127.0.0.1:9092-9094 with
controllers on 19092-19094, each with its own data dir under home/kafka/broker-<n>/ and pid record kafka.<n>.

With KAFKA_BOOTSTRAP set (the contract), nothing is started: the topics are only created on that cluster.

Topics: the partition counts of shared/contracts/topics.py, the replication factor and min.insync.replicas of
state.kafka_replication, unclean leader election off. A topic that exists with fewer partitions than the
contract asks for is grown (CreatePartitions) at `up`; keys then map to other partitions, so messages of one key
still unconsumed at that moment may be read out of order with newer ones (grow on a quiet federation)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from launcher.state import (
    LaunchError,
    PidRecord,
    StatePaths,
    UsageError,
    external_kafka_bootstrap,
    is_broker_name,
    is_ours_and_alive,
    kafka_replication,
    log_tail,
    port_free,
    process_alive,
    read_pid_file,
    read_pid_files,
    remove_pid_file,
    repo_root,
    spawn_logged,
    stop_processes,
    utc_now_iso,
    write_pid_file,
)
from launcher.topology import HOST, broker_names, broker_port, controller_port, local_bootstrap
from shared.contracts.topics import topic_partitions

log = logging.getLogger("yibao.launcher")

KAFKA_VERSION = "4.1.1"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
LOCAL_BOOTSTRAP = local_bootstrap(1)
READY_TIMEOUT_S = 90.0
TOPICS_TIMEOUT_S = 90.0
STOP_GRACE_S = 15.0
# A broker on a small machine shared with the services: C1 only (C2's compiler threads took a core for
# minutes after start, measured under `yibao bench pos`, while the broker's own work is light), and the serial
# collector for a heap this small.
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto")
_ADMIN_REQUEST_TIMEOUT_MS = 5000
# Set on every topic the launcher creates: a replica that fell out of sync never becomes leader (it would
# silently drop acknowledged messages).
UNCLEAN_LEADER_ELECTION = "false"


def render_server_properties(home: Path, node_id: int = 1, kafka_brokers: int = 1) -> str:
    """server.properties of broker node_id in a cluster of kafka_brokers combined broker+controller nodes."""
    paths = StatePaths(home)
    data_dir = paths.broker_data(node_id, kafka_brokers)
    voters = ",".join(f"{n}@{HOST}:{controller_port(n)}" for n in range(1, kafka_brokers + 1))
    client, controller = broker_port(node_id), controller_port(node_id)
    # Internal topics (consumer offsets, transaction state, share-group state): on one broker one replica is
    # all there is; on the cluster 3 replicas and 2 in sync, like the federation's own topics.
    internal_rf, internal_isr = (3, 2) if kafka_brokers >= 3 else (1, 1)
    return (
        "# Written by the yibao launcher on every start; edits are overwritten.\n"
        "process.roles=broker,controller\n"
        f"node.id={node_id}\n"
        f"controller.quorum.voters={voters}\n"
        f"listeners=PLAINTEXT://{HOST}:{client},CONTROLLER://{HOST}:{controller}\n"
        f"advertised.listeners=PLAINTEXT://{HOST}:{client}\n"
        "controller.listener.names=CONTROLLER\n"
        "inter.broker.listener.name=PLAINTEXT\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
        f"log.dirs={data_dir}\n"
        "num.partitions=1\n"
        f"default.replication.factor={internal_rf}\n"
        f"min.insync.replicas={internal_isr}\n"
        "unclean.leader.election.enable=false\n"
        # Fewer offsets partitions than the default 50 make the first consumer-group join (which creates
        # __consumer_offsets) fast.
        f"offsets.topic.replication.factor={internal_rf}\n"
        "offsets.topic.num.partitions=6\n"
        f"transaction.state.log.replication.factor={internal_rf}\n"
        f"transaction.state.log.min.isr={internal_isr}\n"
        f"share.coordinator.state.topic.replication.factor={internal_rf}\n"
        f"share.coordinator.state.topic.min.isr={internal_isr}\n"
        # No 3 s wait for more members before the first rebalance: groups are small and tests start often.
        "group.initial.rebalance.delay.ms=0\n"
        # Topics come only from topic_partitions() with explicit partition counts; a typo must fail loudly.
        "auto.create.topics.enable=false\n"
    )


def render_log4j2_properties() -> str:
    return (
        "# Written by the yibao launcher. Console only: the launcher sends stdout to logs/kafka.log.\n"
        "status = warn\n"
        "name = yibao-kafka\n"
        "appender.console.type = Console\n"
        "appender.console.name = STDOUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        # The broker is chatty at INFO (every segment roll, every rebalance); warnings are what matter here.
        "logger.kafka.name = kafka\n"
        "logger.kafka.level = WARN\n"
        "logger.apachekafka.name = org.apache.kafka\n"
        "logger.apachekafka.level = WARN\n"
        "logger.statechange.name = state.change.logger\n"
        "logger.statechange.level = WARN\n"
    )


def new_cluster_id() -> str:
    """A KRaft cluster id: the base64url form of a random UUID without padding (22 characters), like Kafka's
    own Uuid.randomUuid(). Ids starting with '-' are skipped, as Kafka does, since the tool's argument parser
    would read them as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def ensure_jars(home: Path) -> Path:
    """The pinned jars in home/kafka/libs, fetched with Maven the first time. Returns the libs directory."""
    libs = StatePaths(home).kafka_libs
    if (libs / KAFKA_JAR).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LaunchError(
            f"Kafka jars are missing from {libs} and Maven (mvn) is not on PATH to fetch them; "
            "install Maven (e.g. apt-get install maven) or run `make install` where it is available"
        )
    libs.mkdir(parents=True, exist_ok=True)
    pom = repo_root() / "infra" / "kafka" / "pom.xml"
    log.info("fetching Kafka %s jars into %s", KAFKA_VERSION, libs)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime",
         f"-DoutputDirectory={libs}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or not (libs / KAFKA_JAR).exists():
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise LaunchError(f"fetching the Kafka jars with Maven failed (exit {result.returncode}):\n{output}")
    return libs


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise LaunchError(
            "Java is not on PATH: the Kafka broker needs a Java 17+ runtime (e.g. apt-get install "
            "openjdk-17-jre-headless), or set KAFKA_BOOTSTRAP to use an existing cluster"
        )
    return java


def _jvm_argv(home: Path, main_class: str, *args: str, jvm_opts: tuple[str, ...] = ()) -> list[str]:
    paths = StatePaths(home)
    # "<libs>/*" is expanded by the JVM itself (classpath wildcard), not by a shell.
    return [_java(), *jvm_opts, f"-Dlog4j2.configurationFile={paths.log4j2_properties}",
            "-cp", f"{paths.kafka_libs}/*", main_class, *args]


def write_config(home: Path, node_id: int = 1, kafka_brokers: int = 1) -> None:
    paths = StatePaths(home)
    paths.broker_data(node_id, kafka_brokers).mkdir(parents=True, exist_ok=True)
    paths.broker_properties(node_id, kafka_brokers).write_text(
        render_server_properties(home, node_id, kafka_brokers), encoding="utf-8")
    paths.log4j2_properties.write_text(render_log4j2_properties(), encoding="utf-8")


def _stored_cluster_id(home: Path, kafka_brokers: int) -> str | None:
    """The cluster id some broker of this home was already formatted with (all nodes must share one)."""
    paths = StatePaths(home)
    for node_id in range(1, kafka_brokers + 1):
        meta = paths.broker_data(node_id, kafka_brokers) / "meta.properties"
        with contextlib.suppress(OSError):
            for line in meta.read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "cluster.id" and value.strip():
                    return value.strip()
    return None


def format_storage(home: Path, node_id: int = 1, kafka_brokers: int = 1) -> bool:
    """Format broker node_id's KRaft log dir once (meta.properties absent). True if it was formatted now.
    Formatting again would be refused by Kafka anyway; skipping it keeps the cluster id, and so the data,
    across `up`s. In the cluster every node gets the id the first one was formatted with."""
    paths = StatePaths(home)
    data_dir = paths.broker_data(node_id, kafka_brokers)
    if (data_dir / "meta.properties").exists():
        return False
    cluster_id = _stored_cluster_id(home, kafka_brokers) or new_cluster_id()
    log.info("formatting Kafka storage in %s (cluster id %s)", data_dir, cluster_id)
    # No --standalone: controller.quorum.voters already names every voter (a static quorum).
    argv = _jvm_argv(home, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c",
                     str(paths.broker_properties(node_id, kafka_brokers)))
    result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise LaunchError(f"formatting Kafka storage failed (exit {result.returncode}):\n{output}")
    return True


def formatted_broker_count(home: Path) -> int | None:
    """The cluster shape this home's Kafka data belongs to (1 or 3), or None when no broker was formatted."""
    paths = StatePaths(home)
    if any(paths.broker_data(n, 3).joinpath("meta.properties").exists() for n in (1, 2, 3)):
        return 3
    if paths.broker_data(1, 1).joinpath("meta.properties").exists():
        return 1
    return None


def running_brokers(home: Path) -> list[PidRecord]:
    """Broker records of this home whose JVM is alive and provably ours (whatever the cluster's shape)."""
    return [r for r in read_pid_files(home) if is_broker_name(r.name) and is_ours_and_alive(r)]


def running_kafka(home: Path, name: str = "kafka") -> PidRecord | None:
    record = read_pid_file(StatePaths(home).pid_file(name))
    if record is not None and is_ours_and_alive(record):
        return record
    return None


def check_kafka_ports(home: Path, kafka_brokers: int = 1) -> None:
    """Before anything starts: each broker's ports must be free unless our own broker holds them."""
    if external_kafka_bootstrap() is not None:
        return
    for node_id, name in enumerate(broker_names(kafka_brokers), start=1):
        if running_kafka(home, name) is not None:
            continue
        for port, role in ((broker_port(node_id), "broker"), (controller_port(node_id), "controller")):
            if not port_free(port):
                raise LaunchError(
                    f"port {HOST}:{port} (Kafka {role} {name}) is already in use by a process this launcher did "
                    f"not start from {home}; stop it, or set KAFKA_BOOTSTRAP=host:port to use an existing Kafka "
                    "cluster"
                )


def start_kafka(home: Path, kafka_brokers: int = 1) -> list[str]:
    """Start every broker of the cluster that is not already running (all at once: a KRaft node waits for its
    quorum). Returns the names started now (the caller owns stopping them if the rest of `up` fails)."""
    paths = StatePaths(home)
    names = broker_names(kafka_brokers)
    missing = [(node_id, name) for node_id, name in enumerate(names, start=1) if running_kafka(home, name) is None]
    if not missing:
        log.info("Kafka already running (%s)", ", ".join(names))
        return []
    check_kafka_ports(home, kafka_brokers)
    if not (paths.kafka_libs / KAFKA_JAR).exists():
        raise LaunchError(f"Kafka jars missing from {paths.kafka_libs}; ensure_jars() must run first")
    for node_id, name in missing:
        remove_pid_file(home, name)  # stale: dead, or the pid now belongs to something else
        write_config(home, node_id, kafka_brokers)
        format_storage(home, node_id, kafka_brokers)
    started: list[str] = []
    try:
        for node_id, name in missing:
            argv = _jvm_argv(home, "kafka.Kafka", str(paths.broker_properties(node_id, kafka_brokers)),
                             jvm_opts=JVM_OPTS)
            proc = spawn_logged(argv, env=os.environ, cwd=paths.broker_dir(node_id, kafka_brokers),
                                log_path=paths.log_file(name))
            record = PidRecord(name=name, pid=proc.pid, port=broker_port(node_id),
                               url=f"{HOST}:{broker_port(node_id)}", started_at=utc_now_iso())
            write_pid_file(home, record)
            started.append(name)
            log.info("Kafka %s starting (pid %d) on %s", name, proc.pid, record.url)
    except BaseException:
        stop_kafka(home, started)
        raise
    return started


@contextlib.contextmanager
def _quiet_aiokafka() -> Iterator[None]:
    """While we poll a broker that is still starting, aiokafka logs every refused connection at ERROR, which
    (with no handler configured) Python's last-resort handler prints to stderr. Silence it, then restore."""
    logger = logging.getLogger("aiokafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


async def _probe(bootstrap: str, brokers: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        seen = len(cluster.get("brokers", []))
        if seen < brokers:
            # Topics with replication factor 3 cannot be created before the third broker registers.
            raise KafkaError(f"{seen} of {brokers} brokers registered")
    finally:
        await admin.close()


def wait_for_kafka(bootstrap: str, timeout_s: float, home: Path | None = None, brokers: int = 1,
                   names: list[str] | None = None) -> None:
    """Poll until the cluster answers a metadata request naming at least `brokers` brokers. With home, also
    watch our brokers' processes (names, default all of the shape) so that a JVM that died (bad config, port
    taken) fails at once with its log instead of after the whole timeout."""
    paths = StatePaths(home) if home is not None else None
    records = []
    if paths is not None:
        for name in names if names is not None else broker_names(brokers):
            record = read_pid_file(paths.pid_file(name))
            if record is not None:
                records.append(record)
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with _quiet_aiokafka():
        while True:
            for record in records:
                if not process_alive(record.pid):
                    assert paths is not None
                    log_file = paths.log_file(record.name)
                    raise LaunchError(f"Kafka {record.name} (pid {record.pid}) exited during startup; last lines "
                                      f"of {log_file}:\n{log_tail(log_file)}")
            try:
                asyncio.run(_probe(bootstrap, brokers))
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"Kafka at {bootstrap} did not answer within {timeout_s:.0f} s ({last_error})"
                )
            time.sleep(0.5)


def topic_configs(min_insync_replicas: int) -> dict[str, str]:
    return {"min.insync.replicas": str(min_insync_replicas),
            "unclean.leader.election.enable": UNCLEAN_LEADER_ELECTION}


async def _create_topics(bootstrap: str, partitions_by_topic: dict[str, int], timeout_s: float,
                         replication_factor: int, min_insync_replicas: int) -> list[str]:
    created: list[str] = []
    existing: list[str] = []
    pending = dict(partitions_by_topic)
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        while pending:
            new_topics = [
                NewTopic(name, num_partitions=count, replication_factor=replication_factor,
                         topic_configs=topic_configs(min_insync_replicas))
                for name, count in pending.items()
            ]
            response = await admin.create_topics(new_topics, timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
            retry: dict[str, int] = {}
            for topic_error in response.topic_errors:
                name, code = topic_error[0], topic_error[1]
                if code == 0:
                    created.append(name)
                    continue
                error = for_code(code)
                if error is TopicAlreadyExistsError:
                    existing.append(name)
                    continue
                if error.retriable and time.monotonic() < deadline:
                    # e.g. NOT_CONTROLLER right after a fresh start, while the KRaft quorum settles.
                    retry[name] = pending[name]
                    continue
                message = topic_error[2] if len(topic_error) > 2 else ""
                raise LaunchError(f"creating Kafka topic {name} failed: {error.__name__} {message}".rstrip())
            pending = retry
            if pending:
                await asyncio.sleep(0.5)
        if existing:
            await _grow_partitions(admin, {name: partitions_by_topic[name] for name in existing})
    finally:
        await admin.close()
    return created


async def _grow_partitions(admin: AIOKafkaAdminClient, wanted: dict[str, int]) -> None:
    """Existing topics with fewer partitions than the contract's count get more (never fewer: Kafka cannot)."""
    described = await admin.describe_topics(list(wanted))
    grow = {str(topic["topic"]): NewPartitions(total_count=wanted[str(topic["topic"])]) for topic in described
            if str(topic["topic"]) in wanted and len(topic["partitions"]) < wanted[str(topic["topic"])]}
    if not grow:
        return
    log.warning("growing partitions of %s (keys re-map: in-flight messages of one key may be read out of order)",
                ", ".join(f"{name} to {p.total_count}" for name, p in grow.items()))
    response = await admin.create_partitions(grow, timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
    for topic_error in response.topic_errors:
        name, code = topic_error[0], topic_error[1]
        if code != 0:
            message = topic_error[2] if len(topic_error) > 2 else ""
            raise LaunchError(f"adding partitions to Kafka topic {name} failed: "
                              f"{for_code(code).__name__} {message}".rstrip())


def create_topics(
    bootstrap: str, partitions_by_topic: dict[str, int], timeout_s: float = TOPICS_TIMEOUT_S,
    replication_factor: int = 1, min_insync_replicas: int = 1,
) -> list[str]:
    """Create the topics with their explicit partition counts, replication factor and min.insync.replicas;
    existing ones keep their replication and are grown to the partition count if they have fewer. Returns the
    names created now."""
    deadline = time.monotonic() + timeout_s
    with _quiet_aiokafka():
        while True:
            try:
                return asyncio.run(_create_topics(bootstrap, partitions_by_topic, timeout_s, replication_factor,
                                                  min_insync_replicas))
            except (KafkaError, OSError, TimeoutError) as exc:
                # A broker just (re)started, or the client asked one that is gone: its metadata is stale for a
                # moment. A new admin client within the deadline sees the cluster as it now is.
                if time.monotonic() + 1.0 >= deadline:
                    raise LaunchError(
                        f"creating Kafka topics on {bootstrap} failed: {type(exc).__name__}: {exc}"
                    ) from exc
                log.info("creating Kafka topics: %s; trying again", type(exc).__name__)
                time.sleep(1.0)


def ensure_kafka(home: Path, provinces: list[str], kafka_brokers: int = 1) -> list[str]:
    """Everything `up` needs from Kafka: our brokers running (or KAFKA_BOOTSTRAP's cluster reachable) and every
    topic of these provinces present. Returns the names of the brokers this call started."""
    replication_factor, min_insync = kafka_replication(kafka_brokers)
    external = external_kafka_bootstrap()
    started: list[str] = []
    if external is not None:
        log.info("using the Kafka cluster at %s (KAFKA_BOOTSTRAP); starting no broker", external)
        wait_for_kafka(external, READY_TIMEOUT_S, brokers=replication_factor)
        bootstrap = external
    else:
        formatted = formatted_broker_count(home)
        if formatted is not None and formatted != kafka_brokers:
            raise UsageError(
                f"the Kafka data in {home} belongs to a {formatted}-broker cluster, not {kafka_brokers}; "
                f"`yibao up --fresh --kafka-brokers {kafka_brokers}` starts over (it wipes the state)")
        ensure_jars(home)
        started = start_kafka(home, kafka_brokers)
        bootstrap = local_bootstrap(kafka_brokers)
    try:
        if external is None:
            wait_for_kafka(bootstrap, READY_TIMEOUT_S, home, kafka_brokers)
        created = create_topics(bootstrap, topic_partitions(provinces), replication_factor=replication_factor,
                                min_insync_replicas=min_insync)
    except BaseException:
        stop_kafka(home, started)
        raise
    if created:
        log.info("created topics (replication %d, min.insync.replicas %d): %s", replication_factor, min_insync,
                 ", ".join(created))
    return started


def stop_kafka(home: Path, names: list[str] | None = None, grace_s: float = STOP_GRACE_S) -> None:
    """Stop our brokers (names, default every broker record of this home) if their pid files name live
    kafka.Kafka JVMs; all at once, so the controllers' quorum goes away together instead of the last one
    waiting for a quorum that is gone. A controlled shutdown takes seconds."""
    paths = StatePaths(home)
    if names is None:
        records = [r for r in read_pid_files(home) if is_broker_name(r.name)]
    else:
        records = [r for r in (read_pid_file(paths.pid_file(n)) for n in names) if r is not None]
    if records:
        stop_processes(records, grace_s)
    for record in records:
        remove_pid_file(home, record.name)
