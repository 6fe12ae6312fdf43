"""The launcher's state directory (`.yibao/` or YIBAO_HOME) and the processes recorded in it.

Layout:
    shape.json               the shape `up` last started: {"replicas": N, "kafka_brokers": 1|3}; `status`, `down`,
                             a later `up` without --replicas/--kafka-brokers and the benches read it
    kafka/libs/              the pinned Kafka jars (kept by `up --fresh`, so a wipe needs no refetch)
    kafka/data/              KRaft log dir of the single broker
    kafka/server.properties, kafka/log4j2.properties
    kafka/broker-<n>/        data/ and server.properties of broker n of the 3-broker cluster
    haproxy/haproxy.cfg      the load balancer's config (with --replicas N > 1), written at every `up`
    logs/<name>.log          stdout+stderr of each process, appended across runs
    pids/<name>.pid          JSON PidRecord of each process this launcher started
    db/                      SQLite files (written by the services themselves)
    secrets.json             keys generated once: id_hash_key, token_key, internal_token
    operator_token           the operator bearer token in force (generated, or YIBAO_OPERATOR_TOKEN)

Process ownership is always proven twice before a signal is sent: the pid must come from one of our pid files
AND its /proc cmdline must be the command we start. A recycled pid therefore never gets killed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from launcher.topology import HOST, HUB_PORT, POLICY_ENV, ServiceSpec, Shape, local_bootstrap

log = logging.getLogger("yibao.launcher")

KAFKA_NAME = "kafka"  # the single broker; brokers of the 3-broker cluster are "kafka.<n>"
HAPROXY_NAME = "haproxy"
SHAPE_FILE = "shape.json"
SECRET_NAMES = ("id_hash_key", "token_key", "internal_token")
# Written into every home we create, so that `--fresh` can tell a directory of ours from, say, a mistyped
# YIBAO_HOME=$HOME before it deletes anything.
MARKER_NAME = ".yibao-home"
_OUR_TOP_LEVEL = frozenset({MARKER_NAME, "kafka", "logs", "pids", "db", "secrets.json", "operator_token", SHAPE_FILE,
                            "haproxy", "sms_inbound_token"})
# secrets.token_urlsafe(32) -> 43 characters, 256 bits: well past brute force for HMAC keys and bearer tokens.
_SECRET_BYTES = 32


class LaunchError(Exception):
    """A failure the operator can act on; the CLI prints the message and exits non-zero (no traceback)."""


class UsageError(LaunchError):
    """A request `up` refuses before starting anything (bad shape, missing prerequisite): exit 2."""


def is_broker_name(name: str) -> bool:
    return name == KAFKA_NAME or name.startswith(f"{KAFKA_NAME}.")


def repo_root() -> Path:
    """The checkout this launcher lives in: services run with it as cwd; infra/kafka/pom.xml is found here."""
    return Path(__file__).resolve().parents[1]


def home_dir() -> Path:
    """YIBAO_HOME, else `.yibao` in the current directory; absolute, because services get it via env and run
    with a different cwd."""
    raw = os.environ.get("YIBAO_HOME", "").strip()
    return Path(raw or ".yibao").expanduser().resolve()


@dataclass(frozen=True)
class StatePaths:
    home: Path

    @property
    def kafka(self) -> Path:
        return self.home / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka / "libs"

    @property
    def kafka_data(self) -> Path:
        return self.kafka / "data"

    @property
    def server_properties(self) -> Path:
        return self.kafka / "server.properties"

    @property
    def log4j2_properties(self) -> Path:
        return self.kafka / "log4j2.properties"

    def broker_dir(self, node_id: int, kafka_brokers: int) -> Path:
        """Where broker node_id keeps its server.properties and data: kafka/ itself for the single broker (as
        before the cluster existed), kafka/broker-<n>/ in the 3-broker cluster."""
        return self.kafka if kafka_brokers == 1 else self.kafka / f"broker-{node_id}"

    def broker_data(self, node_id: int, kafka_brokers: int) -> Path:
        return self.broker_dir(node_id, kafka_brokers) / "data"

    def broker_properties(self, node_id: int, kafka_brokers: int) -> Path:
        return self.broker_dir(node_id, kafka_brokers) / "server.properties"

    @property
    def haproxy_dir(self) -> Path:
        return self.home / "haproxy"

    @property
    def haproxy_cfg(self) -> Path:
        return self.haproxy_dir / "haproxy.cfg"

    @property
    def shape_file(self) -> Path:
        return self.home / SHAPE_FILE

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def pids(self) -> Path:
        return self.home / "pids"

    @property
    def db(self) -> Path:
        return self.home / "db"

    @property
    def secrets_file(self) -> Path:
        return self.home / "secrets.json"

    @property
    def operator_token_file(self) -> Path:
        return self.home / "operator_token"

    @property
    def marker(self) -> Path:
        return self.home / MARKER_NAME

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.pids / f"{name}.pid"


def ensure_layout(home: Path) -> StatePaths:
    paths = StatePaths(home)
    for directory in (paths.kafka_libs, paths.kafka_data, paths.logs, paths.pids, paths.db):
        directory.mkdir(parents=True, exist_ok=True)
    paths.marker.touch(exist_ok=True)
    return paths


def wipe_state(home: Path) -> None:
    """`up --fresh`: delete everything in the home except kafka/libs (the jars are pinned, so refetching them
    would only cost time). Refuses a non-empty directory that does not look like one of ours."""
    paths = StatePaths(home)
    if not home.exists():
        return
    entries = list(home.iterdir())
    foreign = sorted(e.name for e in entries if e.name not in _OUR_TOP_LEVEL)
    if foreign and not paths.marker.exists():
        raise LaunchError(
            f"refusing to wipe {home}: it does not look like a yibao state directory "
            f"(unexpected entries: {', '.join(foreign[:5])}); check YIBAO_HOME"
        )
    for entry in entries:
        if entry == paths.kafka:
            for sub in entry.iterdir():
                if sub != paths.kafka_libs:
                    _remove(sub)
        elif entry != paths.marker:
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Atomic (temp file + rename: a crash never leaves half a secret) and mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ------------------------------------------------------------------------------------------------ secrets


@dataclass(frozen=True)
class Secrets:
    id_hash_key: str
    token_key: str
    internal_token: str


def load_or_create_secrets(home: Path) -> Secrets:
    """Generated once; later calls return the same values. The id hash key in particular must never change
    under existing databases, or every stored person hash stops matching."""
    path = StatePaths(home).secrets_file
    stored: dict[str, str] = {}
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LaunchError(
                f"{path} is unreadable ({exc}); fix it or start over with `yibao up --fresh`"
            ) from exc
        if not isinstance(loaded, dict):
            raise LaunchError(f"{path} is not a JSON object; fix it or start over with `yibao up --fresh`")
        stored = {k: v for k, v in loaded.items() if isinstance(v, str) and v}
    missing = [name for name in SECRET_NAMES if name not in stored]
    if missing:
        # Only the missing keys are generated: existing ones are kept even if the file predates a new key.
        for name in missing:
            stored[name] = secrets.token_urlsafe(_SECRET_BYTES)
        _write_private(path, json.dumps(stored, indent=2, sort_keys=True) + "\n")
    return Secrets(**{name: stored[name] for name in SECRET_NAMES})


def resolve_operator_token(home: Path) -> str:
    """The contract: YIBAO_OPERATOR_TOKEN when set at `up`; else the token in home/operator_token, generated
    on first use and then stable. The file always ends up holding the token in force, env-given or not, so
    that the demo, the tests and an operator's scripts have one place to read it from."""
    path = StatePaths(home).operator_token_file
    from_env = os.environ.get("YIBAO_OPERATOR_TOKEN", "").strip()
    stored = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    token = from_env or stored or secrets.token_urlsafe(_SECRET_BYTES)
    if token != stored:
        _write_private(path, token + "\n")
    return token


def resolve_sms_inbound_token(home: Path) -> str:
    """The contract (issue 13): the SMS gateway's bearer token for `POST /v1/sms/inbound` at the nodes is
    YIBAO_SMS_INBOUND_TOKEN when set at `up`, else the token in home/sms_inbound_token, generated on first use
    and then stable; the file holds the token in force either way (as for the operator token)."""
    path = home / "sms_inbound_token"
    from_env = os.environ.get("YIBAO_SMS_INBOUND_TOKEN", "").strip()
    stored = path.read_text(encoding="utf-8").strip() if path.exists() else ""
    token = from_env or stored or secrets.token_urlsafe(_SECRET_BYTES)
    if token != stored:
        _write_private(path, token + "\n")
    return token


def external_kafka_bootstrap() -> str | None:
    """KAFKA_BOOTSTRAP set: the contract says use that cluster and start no broker of our own."""
    return os.environ.get("KAFKA_BOOTSTRAP", "").strip() or None


def kafka_bootstrap(kafka_brokers: int = 1) -> str:
    return external_kafka_bootstrap() or local_bootstrap(kafka_brokers)


# ------------------------------------------------------------------------------------------------ shape


def read_shape(home: Path) -> Shape | None:
    """The shape `up` last started from this home, or None (never started, wiped, or unreadable)."""
    try:
        data = json.loads(StatePaths(home).shape_file.read_text(encoding="utf-8"))
        return Shape(replicas=int(data["replicas"]), kafka_brokers=int(data["kafka_brokers"])).validate()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current_shape(home: Path) -> Shape:
    return read_shape(home) or Shape()


def write_shape(home: Path, shape: Shape) -> None:
    path = StatePaths(home).shape_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({"replicas": shape.replicas, "kafka_brokers": shape.kafka_brokers}) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def database_backend() -> str:
    """"postgresql" when YIBAO_DATABASE_URL is set (the services then use it), else "sqlite"."""
    return "postgresql" if os.environ.get("YIBAO_DATABASE_URL", "").strip() else "sqlite"


def federation_shape_report(home: Path) -> dict[str, object]:
    """What a bench measured: database backend, replicas per service and Kafka brokers (the home's remembered
    shape), and the bootstrap the services were given."""
    shape = current_shape(home)
    return {"backend": database_backend(), "replicas": shape.replicas, "kafka_brokers": shape.kafka_brokers,
            "kafka_bootstrap": kafka_bootstrap(shape.kafka_brokers)}


def _positive_int_env(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise UsageError(f"{name} must be at least 1 (got {value})")
    return value


def kafka_replication(kafka_brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) of the federation's topics: YIBAO_KAFKA_REPLICATION_FACTOR /
    YIBAO_KAFKA_MIN_INSYNC_REPLICAS when set, else by the cluster's shape: 3 and 2 on the 3-broker cluster (an
    acknowledged message is on two disks, and one broker may be lost), 1 and 1 on the single broker."""
    default_rf, default_isr = (3, 2) if kafka_brokers >= 3 else (1, 1)
    rf = _positive_int_env("YIBAO_KAFKA_REPLICATION_FACTOR") or default_rf
    min_isr = _positive_int_env("YIBAO_KAFKA_MIN_INSYNC_REPLICAS") or min(default_isr, rf)
    if min_isr > rf:
        raise UsageError(f"min.insync.replicas {min_isr} is above the replication factor {rf}: every produce "
                         "would be refused")
    if external_kafka_bootstrap() is None and rf > kafka_brokers:
        raise UsageError(f"replication factor {rf} needs at least {rf} brokers; this federation has "
                         f"{kafka_brokers} (--kafka-brokers 3, or YIBAO_KAFKA_REPLICATION_FACTOR=1)")
    return rf, min_isr


def service_env(spec: ServiceSpec, home: Path, provinces: Iterable[str], shape: Shape | None = None
                ) -> dict[str, str]:
    """The full environment of one service process. Everything the launcher decides is set explicitly;
    YIBAO_DATABASE_URL, YIBAO_DB_SCHEMA_PREFIX and the policy knobs pass through from our own environment.
    YIBAO_HUB_URL and the province URLs stay the public ports: with replicas, HAProxy answers there."""
    shape = shape or Shape()
    keys = load_or_create_secrets(home)
    replication_factor, min_insync = kafka_replication(shape.kafka_brokers)
    env = dict(os.environ)
    env.update(
        {
            "YIBAO_HOME": str(home.resolve()),
            "YIBAO_HTTP_HOST": HOST,
            "YIBAO_HTTP_PORT": str(spec.port),
            "YIBAO_REPLICA_INDEX": str(spec.replica),
            "YIBAO_KAFKA_BOOTSTRAP": kafka_bootstrap(shape.kafka_brokers),
            "YIBAO_KAFKA_REPLICATION_FACTOR": str(replication_factor),
            "YIBAO_KAFKA_MIN_INSYNC_REPLICAS": str(min_insync),
            "YIBAO_ID_HASH_KEY": keys.id_hash_key,
            "YIBAO_TOKEN_KEY": keys.token_key,
            "YIBAO_INTERNAL_TOKEN": keys.internal_token,
            "YIBAO_OPERATOR_TOKEN": resolve_operator_token(home),
            "YIBAO_SMS_INBOUND_TOKEN": resolve_sms_inbound_token(home),
            "YIBAO_HUB_URL": f"http://{HOST}:{HUB_PORT}",
            "YIBAO_PROVINCES": ",".join(provinces),
        }
    )
    # Behind HAProxy (replicas) every client arrives from 127.0.0.1: the services then believe the
    # X-Forwarded-For HAProxy sets, from 127.0.0.1 only (shared/runtime.py serve; sign-in throttling per address).
    env.pop("YIBAO_FORWARDED_ALLOW_IPS", None)
    if shape.replicas > 1:
        env["YIBAO_FORWARDED_ALLOW_IPS"] = HOST
    env.update(spec.env)
    return env


def policy_env_summary(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The policy knobs as the services will see them (only those set), for the `up` banner."""
    source = os.environ if environ is None else environ
    return {name: source[name] for name in POLICY_ENV if name in source}


# ------------------------------------------------------------------------------------------------ pid files


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    port: int
    url: str
    started_at: str
    # For services: the `-m` module, checked against /proc/<pid>/cmdline before any signal is sent.
    module: str = ""
    # The provinces the federation was started with, so a later `up` can tell whether it matches.
    provinces: tuple[str, ...] = field(default_factory=tuple)


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_pid_file(home: Path, record: PidRecord) -> None:
    data = asdict(record)
    data["provinces"] = list(record.provinces)
    path = StatePaths(home).pid_file(record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_pid_file(path: Path) -> PidRecord | None:
    """None for a missing or corrupt file (a crash mid-write cannot cause one thanks to the rename, a hand
    edit can): such a file names no process we could prove is ours."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PidRecord(
            name=str(data["name"]),
            pid=int(data["pid"]),
            port=int(data["port"]),
            url=str(data["url"]),
            started_at=str(data["started_at"]),
            module=str(data.get("module", "")),
            provinces=tuple(str(p) for p in data.get("provinces", [])),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_pid_files(home: Path) -> list[PidRecord]:
    directory = StatePaths(home).pids
    if not directory.is_dir():
        return []
    records = [read_pid_file(p) for p in sorted(directory.glob("*.pid"))]
    return [r for r in records if r is not None]


def remove_pid_file(home: Path, name: str) -> None:
    StatePaths(home).pid_file(name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ processes

# Popen objects of the processes this Python process started. Kept so that (a) they are not garbage
# collected while running (Popen.__del__ warns), and (b) we reap them: an un-reaped child is a zombie that
# os.kill(pid, 0) still reports as alive, which matters when tests call start/stop from one process.
_children: dict[int, subprocess.Popen[bytes]] = {}
_RUN_MARKER = "--- yibao launcher starting"


def spawn_logged(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a detached process (own session: a Ctrl-C in the terminal that ran `up` does not reach it, and it
    outlives the CLI) with stdout+stderr appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_fh:
        log_fh.write(f"\n{_RUN_MARKER} {utc_now_iso()}: {' '.join(argv)}\n".encode())
        log_fh.flush()
        proc = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def process_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else; never ours (cmdline check will say so)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state letter follows the parenthesised command name, which may itself contain spaces or ')'.
    state = stat.rsplit(")", 1)[-1].split()[0] if ")" in stat else ""
    return state != "Z"


def process_argv(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def argv_matches(record: PidRecord, argv: list[str]) -> bool:
    """Is argv the command we would have started for this record? Kafka: a JVM running kafka.Kafka. HAProxy:
    the haproxy binary with the config file recorded as its module. Services: python -m <the recorded module>
    (any services.* module for records that predate the module field)."""
    if is_broker_name(record.name):
        return "kafka.Kafka" in argv
    if record.name == HAPROXY_NAME:
        return bool(argv) and Path(argv[0]).name == "haproxy" and (not record.module or record.module in argv)
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            module = argv[i + 1]
            return module == record.module if record.module else module.startswith("services.")
    return False


def is_ours_and_alive(record: PidRecord) -> bool:
    if not process_alive(record.pid):
        return False
    argv = process_argv(record.pid)
    return argv is not None and argv_matches(record, argv)


def stop_processes(records: list[PidRecord], grace_s: float) -> list[str]:
    """SIGTERM every live process of ours among records, wait up to grace_s for all of them together, then
    SIGKILL the rest. Returns the names that had to be killed. Dead pids and pids not ours are left alone."""
    targets = [r for r in records if is_ours_and_alive(r)]
    for record in targets:
        log.info("stopping %s (pid %d)", record.name, record.pid)
        _signal(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    remaining = list(targets)
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [r for r in remaining if process_alive(r.pid)]
    for record in remaining:
        log.warning("%s (pid %d) did not stop within %.0f s; killing it", record.name, record.pid, grace_s)
        _signal(record.pid, signal.SIGKILL)
    for record in remaining:
        _wait_gone(record.pid, timeout_s=5.0)
    for record in targets:
        child = _children.pop(record.pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1.0)
    return [r.name for r in remaining]


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def port_free(port: int, host: str = HOST) -> bool:
    """Can a server bind host:port right now? SO_REUSEADDR like uvicorn and the JVM set it, so that sockets in
    TIME_WAIT from a previous run do not count as 'in use' while a listener still does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def tcp_answers(host: str, port: int, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def log_tail(path: Path, max_lines: int = 40) -> str:
    """The last lines of a log, for error messages: enough to show a traceback, not the whole history."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    # Only this run's output: the log is appended across runs, and spawn_logged marks where each run begins.
    start = data.rfind(_RUN_MARKER)
    if start >= 0:
        data = data[start:]
    lines = data.splitlines()[-max_lines:]
    return "\n".join(lines)
