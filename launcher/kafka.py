"""A real Apache Kafka broker, single node in KRaft mode (broker and controller in one JVM), run straight
from the jars pinned by infra/kafka/pom.xml: no distribution tarball, no shell scripts.

With KAFKA_BOOTSTRAP set (the contract), nothing is started: the topics are only created on that cluster."""

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

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from launcher.state import (
    KAFKA_NAME,
    LaunchError,
    PidRecord,
    StatePaths,
    external_kafka_bootstrap,
    is_ours_and_alive,
    log_tail,
    port_free,
    process_alive,
    read_pid_file,
    remove_pid_file,
    repo_root,
    spawn_logged,
    stop_processes,
    utc_now_iso,
    write_pid_file,
)
from launcher.topology import HOST, KAFKA_CONTROLLER_PORT, KAFKA_PORT
from shared.contracts.topics import topic_partitions

log = logging.getLogger("yibao.launcher")

KAFKA_VERSION = "4.1.1"
KAFKA_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
LOCAL_BOOTSTRAP = f"{HOST}:{KAFKA_PORT}"
READY_TIMEOUT_S = 60.0
TOPICS_TIMEOUT_S = 30.0
STOP_GRACE_S = 15.0
# A one-node broker on a small machine shared with the services: C1 only (C2's compiler threads took a core for
# minutes after start, measured under `yibao bench pos`, while the broker's own work is light), and the serial
# collector for a heap this small.
JVM_OPTS = ("-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto")
_ADMIN_REQUEST_TIMEOUT_MS = 5000


def render_server_properties(home: Path) -> str:
    data_dir = StatePaths(home).kafka_data
    return (
        "# Written by the yibao launcher on every start; edits are overwritten.\n"
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"controller.quorum.voters=1@{HOST}:{KAFKA_CONTROLLER_PORT}\n"
        f"listeners=PLAINTEXT://{HOST}:{KAFKA_PORT},CONTROLLER://{HOST}:{KAFKA_CONTROLLER_PORT}\n"
        f"advertised.listeners=PLAINTEXT://{HOST}:{KAFKA_PORT}\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
        f"log.dirs={data_dir}\n"
        "num.partitions=1\n"
        # One node: every internal topic can only have one replica. Fewer offsets partitions than the default
        # 50 make the first consumer-group join (which creates __consumer_offsets) fast.
        "offsets.topic.replication.factor=1\n"
        "offsets.topic.num.partitions=6\n"
        "transaction.state.log.replication.factor=1\n"
        "transaction.state.log.min.isr=1\n"
        # No 3 s wait for more members before the first rebalance: there is one consumer per group.
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


def write_config(home: Path) -> None:
    paths = StatePaths(home)
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    paths.server_properties.write_text(render_server_properties(home), encoding="utf-8")
    paths.log4j2_properties.write_text(render_log4j2_properties(), encoding="utf-8")


def format_storage(home: Path) -> bool:
    """Format the KRaft log dir once (meta.properties absent). True if it was formatted now. Formatting again
    would be refused by Kafka anyway; skipping it keeps the cluster id, and so the data, across `up`s."""
    paths = StatePaths(home)
    if (paths.kafka_data / "meta.properties").exists():
        return False
    cluster_id = new_cluster_id()
    log.info("formatting Kafka storage in %s (cluster id %s)", paths.kafka_data, cluster_id)
    # No --standalone: it would contradict controller.quorum.voters, which already names the single voter.
    argv = _jvm_argv(
        home, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(paths.server_properties)
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise LaunchError(f"formatting Kafka storage failed (exit {result.returncode}):\n{output}")
    return True


def running_kafka(home: Path) -> PidRecord | None:
    record = read_pid_file(StatePaths(home).pid_file(KAFKA_NAME))
    if record is not None and is_ours_and_alive(record):
        return record
    return None


def check_kafka_ports(home: Path) -> None:
    """Before anything starts: both broker ports must be free unless our own broker holds them."""
    if external_kafka_bootstrap() is not None or running_kafka(home) is not None:
        return
    for port, role in ((KAFKA_PORT, "broker"), (KAFKA_CONTROLLER_PORT, "controller")):
        if not port_free(port):
            raise LaunchError(
                f"port {HOST}:{port} (Kafka {role}) is already in use by a process this launcher did not "
                f"start from {home}; stop it, or set KAFKA_BOOTSTRAP=host:port to use an existing Kafka cluster"
            )


def start_kafka(home: Path) -> bool:
    """Start our broker unless it is already running. True if it was started now (the caller owns stopping it
    if the rest of `up` fails)."""
    if running_kafka(home) is not None:
        log.info("Kafka already running")
        return False
    paths = StatePaths(home)
    remove_pid_file(home, KAFKA_NAME)  # stale: dead, or the pid now belongs to something else
    check_kafka_ports(home)
    if not (paths.kafka_libs / KAFKA_JAR).exists():
        raise LaunchError(f"Kafka jars missing from {paths.kafka_libs}; ensure_jars() must run first")
    write_config(home)
    format_storage(home)
    argv = _jvm_argv(home, "kafka.Kafka", str(paths.server_properties), jvm_opts=JVM_OPTS)
    proc = spawn_logged(argv, env=os.environ, cwd=paths.kafka, log_path=paths.log_file(KAFKA_NAME))
    record = PidRecord(
        name=KAFKA_NAME, pid=proc.pid, port=KAFKA_PORT, url=LOCAL_BOOTSTRAP, started_at=utc_now_iso()
    )
    write_pid_file(home, record)
    log.info("Kafka starting (pid %d)", proc.pid)
    return True


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


async def _probe(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


def wait_for_kafka(bootstrap: str, timeout_s: float, home: Path | None = None) -> None:
    """Poll until the broker answers a metadata request. With home, also watch our broker's process so that a
    JVM that died (bad config, port taken) fails at once with its log instead of after the whole timeout."""
    record = read_pid_file(StatePaths(home).pid_file(KAFKA_NAME)) if home is not None else None
    deadline = time.monotonic() + timeout_s
    last_error = "no answer"
    with _quiet_aiokafka():
        while True:
            if record is not None and not process_alive(record.pid):
                assert home is not None
                raise LaunchError(
                    f"Kafka (pid {record.pid}) exited during startup; last lines of "
                    f"{StatePaths(home).log_file(KAFKA_NAME)}:\n{log_tail(StatePaths(home).log_file(KAFKA_NAME))}"
                )
            try:
                asyncio.run(_probe(bootstrap))
                return
            except (KafkaError, OSError, TimeoutError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise LaunchError(
                    f"Kafka at {bootstrap} did not answer within {timeout_s:.0f} s ({last_error})"
                )
            time.sleep(0.5)


async def _create_topics(bootstrap: str, partitions_by_topic: dict[str, int], timeout_s: float) -> list[str]:
    created: list[str] = []
    pending = dict(partitions_by_topic)
    deadline = time.monotonic() + timeout_s
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=_ADMIN_REQUEST_TIMEOUT_MS)
    try:
        await admin.start()
        while pending:
            new_topics = [
                NewTopic(name, num_partitions=count, replication_factor=1) for name, count in pending.items()
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
    finally:
        await admin.close()
    return created


def create_topics(
    bootstrap: str, partitions_by_topic: dict[str, int], timeout_s: float = TOPICS_TIMEOUT_S
) -> list[str]:
    """Create the topics with their explicit partition counts (replication 1); existing ones are left as they
    are. Returns the names created now."""
    with _quiet_aiokafka():
        try:
            return asyncio.run(_create_topics(bootstrap, partitions_by_topic, timeout_s))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise LaunchError(
                f"creating Kafka topics on {bootstrap} failed: {type(exc).__name__}: {exc}"
            ) from exc


def ensure_kafka(home: Path, provinces: list[str]) -> bool:
    """Everything `up` needs from Kafka: our broker running (or KAFKA_BOOTSTRAP's cluster reachable) and every
    topic of these provinces present. True if our broker was started by this call."""
    external = external_kafka_bootstrap()
    if external is not None:
        log.info("using the Kafka cluster at %s (KAFKA_BOOTSTRAP); starting no broker", external)
        wait_for_kafka(external, READY_TIMEOUT_S)
        bootstrap = external
        started = False
    else:
        ensure_jars(home)
        started = start_kafka(home)
        bootstrap = LOCAL_BOOTSTRAP
        try:
            wait_for_kafka(bootstrap, READY_TIMEOUT_S, home)
        except BaseException:
            if started:
                stop_kafka(home)
            raise
    try:
        created = create_topics(bootstrap, topic_partitions(provinces))
    except BaseException:
        if started:
            stop_kafka(home)
        raise
    if created:
        log.info("created topics: %s", ", ".join(created))
    return started


def stop_kafka(home: Path, grace_s: float = STOP_GRACE_S) -> None:
    """Stop our broker if its pid file names a live kafka.Kafka JVM (a controlled shutdown takes seconds)."""
    path = StatePaths(home).pid_file(KAFKA_NAME)
    record = read_pid_file(path)
    if record is not None:
        stop_processes([record], grace_s)
    path.unlink(missing_ok=True)

