#!/usr/bin/env python3
"""Run a real single-node Apache Kafka broker (KRaft mode) on 127.0.0.1.

No Docker needed: the broker jars come from Maven Central (see
``deploy/kafka/pom.xml``) and run on the machine's Java (17 or newer).

Command line::

    python deploy/local_kafka.py fetch            # download the broker jars
    python deploy/local_kafka.py up [--port N] [--fresh] [--sasl USER:PASSWORD ...]
    python deploy/local_kafka.py status
    python deploy/local_kafka.py logs [-n 100] [-f]
    python deploy/local_kafka.py down

``up`` prints the bootstrap address (``127.0.0.1:<port>``) on its last line
and writes it to ``<run dir>/bootstrap``. With ``--sasl`` the broker also has a
SASL_PLAINTEXT listener (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN, for the users
given) whose address goes to ``<run dir>/sasl_bootstrap``; the PLAINTEXT
listener stays for the controller and inter-broker traffic.

As a module (the test suite does this)::

    import local_kafka
    local_kafka.fetch()
    broker = local_kafka.start(run_dir)      # free ports, fresh storage
    broker = local_kafka.start(run_dir, sasl={"alice": "secret"})  # + broker.sasl_bootstrap
    ... broker.bootstrap ...
    broker.stop()

Only the Python standard library is used, so this runs before the project's
own dependencies are installed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DEPLOY_DIR = Path(__file__).resolve().parent
REPO_ROOT = DEPLOY_DIR.parent
KAFKA_DEPLOY_DIR = DEPLOY_DIR / "kafka"
POM_PATH = KAFKA_DEPLOY_DIR / "pom.xml"
LOG4J_CONFIG = KAFKA_DEPLOY_DIR / "log4j2.yaml"

ENV_BASE_DIR = "MILESTREAM_KAFKA_DIR"
ENV_JAVA_OPTS = "MILESTREAM_KAFKA_JAVA_OPTS"

HOST = "127.0.0.1"
DEFAULT_PORT = 9092
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 60

BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"
# Logged by kafka.server.KafkaRaftServer once the broker is unfenced and serving.
STARTED_MESSAGE = "Kafka Server started"

HEAP_OPTS = ["-Xmx1G", "-Xms256m"]
JVM_OPTS = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true"]
# The storage tool is a short-lived JVM: optimise for start-up time.
TOOL_JVM_OPTS = ["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"]

STATE_FILE = "broker.json"
BOOTSTRAP_FILE = "bootstrap"
SASL_BOOTSTRAP_FILE = "sasl_bootstrap"
PROPERTIES_FILE = "server.properties"
SERVER_LOG = "server.log"
STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
DATA_DIR = "data"
STAMP_FILE = ".pom.sha256"
KAFKA_JAR_PREFIX = "kafka_2.13-"

SASL_LISTENER = "SASL_PLAINTEXT"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_MECHANISMS = (*SCRAM_MECHANISMS, "PLAIN")


class KafkaError(RuntimeError):
    """Something went wrong fetching, starting or stopping the local broker."""


class BrokerStartError(KafkaError):
    """The broker did not come up; ``log_tail`` holds the end of its logs."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        full = message
        if log_tail:
            full = f"{message}\n--- broker log tail ---\n{log_tail}"
        super().__init__(full)
        self.log_tail = log_tail


# --------------------------------------------------------------------------- paths


def base_dir() -> Path:
    """Folder holding ``libs/`` (jars) and ``run/`` (the CLI broker)."""
    env = os.environ.get(ENV_BASE_DIR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / ".local" / "kafka"


def libs_dir() -> Path:
    return base_dir() / "libs"


def default_run_dir() -> Path:
    return base_dir() / "run"


# --------------------------------------------------------------------------- fetch


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()


def kafka_version(libs: Path | None = None) -> str | None:
    """Version of the broker jar in ``libs`` (None if not fetched yet)."""
    libs = libs or libs_dir()
    for jar in sorted(libs.glob(f"{KAFKA_JAR_PREFIX}*.jar")):
        version = jar.name[len(KAFKA_JAR_PREFIX) : -len(".jar")]
        if not version.endswith(("-sources", "-javadoc", "-test")):
            return version
    return None


def _libs_up_to_date(libs: Path, digest: str) -> bool:
    stamp = libs / STAMP_FILE
    try:
        recorded = stamp.read_text().strip()
    except OSError:
        return False
    return recorded == digest and kafka_version(libs) is not None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so that parallel test workers fetch only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fetch(*, force: bool = False) -> Path:
    """Download the broker jars into ``<base>/libs`` with Maven; return that folder.

    Skipped when the jars are there and were fetched with the current pom.
    """
    libs = libs_dir()
    digest = _pom_digest()
    if not force and _libs_up_to_date(libs, digest):
        return libs
    with _file_lock(base_dir() / ".fetch.lock"):
        if not force and _libs_up_to_date(libs, digest):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaError("Maven (mvn) is not on PATH; install it (e.g. apt-get install maven)")
        print(f"fetching the Kafka jars from Maven Central into {libs} ...", file=sys.stderr, flush=True)
        staging = libs.with_name(f"libs.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-Dstyle.color=never",
            "-f",
            str(POM_PATH),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ]
        result = subprocess.run(
            cmd,
            cwd=KAFKA_DEPLOY_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaError(
                f"fetching Kafka jars failed (exit {result.returncode}): {shlex.join(cmd)}\n"
                + _tail_text(result.stdout, LOG_TAIL_LINES)
            )
        if kafka_version(staging) is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise KafkaError(f"Maven finished but no {KAFKA_JAR_PREFIX}*.jar in {staging}")
        (staging / STAMP_FILE).write_text(digest + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs


# --------------------------------------------------------------------------- helpers


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise KafkaError("java is not on PATH (Java 17 or newer is needed)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _accepts_connections(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def new_cluster_id() -> str:
    """A random KRaft cluster id (16 bytes, URL-safe base64 without padding),

    the same shape as ``kafka-storage.sh random-uuid`` produces.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):  # would be read as a command-line option
            return cluster_id


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def tail_file(path: Path, lines: int = LOG_TAIL_LINES, start: int = 0) -> str:
    """The last ``lines`` lines of a (possibly large) text file, '' if missing.

    Nothing before byte offset ``start`` is returned.
    """
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            if start > size:
                start = 0  # the file was rolled over or truncated
            block = 64 * 1024
            data = b""
            while size > start and data.count(b"\n") <= lines:
                step = min(block, size - start)
                size -= step
                handle.seek(size)
                data = handle.read(step) + data
    except OSError:
        return ""
    return _tail_text(data.decode("utf-8", errors="replace"), lines)


def _head_and_tail(path: Path, head: int, tail: int) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(1024 * 1024)
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(lines) <= head + tail:
        return "\n".join(lines)
    skipped = len(lines) - head - tail
    return "\n".join([*lines[:head], f"... ({skipped} lines skipped) ...", *lines[-tail:]])


def log_tail(run_dir: Path, lines: int = LOG_TAIL_LINES, server_log_start: int = 0) -> str:
    """End of the broker log plus anything the JVM printed on stdout/stderr.

    ``server_log_start`` skips what earlier runs wrote to server.log.
    """
    run_dir = Path(run_dir)
    parts = []
    text = tail_file(run_dir / SERVER_LOG, lines, server_log_start)
    if text.strip():
        parts.append(f"==> {run_dir / SERVER_LOG} <==\n{text}")
    for name in (STDOUT_LOG, STDERR_LOG):
        # Only the latest run is in these; a JVM error starts with its message,
        # so keep the head of a long stack trace as well as the end.
        text = _head_and_tail(run_dir / name, 15, 15)
        if text.strip():
            parts.append(f"==> {run_dir / name} <==\n{text}")
    return "\n".join(parts) if parts else f"(no logs in {run_dir})"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_our_broker(pid: int | None, run_dir: Path) -> bool:
    """True if ``pid`` is alive and is the broker of ``run_dir`` (guards against pid reuse)."""
    if not pid or not _process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (not Linux): trust the pid
    args = [arg.decode(errors="replace") for arg in cmdline]
    return BROKER_MAIN in args and str(run_dir / PROPERTIES_FILE) in args


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _terminate(pid: int, pgid: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    """SIGTERM the process group, wait up to ``timeout`` s, then SIGKILL it."""

    def alive() -> bool:
        if process is not None:
            return process.poll() is None
        return _process_alive(pid)

    if not alive():
        return
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive():
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.1)


# --------------------------------------------------------------------------- state


def read_state(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = Path(run_dir) / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


@dataclasses.dataclass
class Broker:
    """A running local broker."""

    bootstrap: str
    pid: int
    run_dir: Path
    log_path: Path
    port: int
    controller_port: int
    kafka_version: str | None = None
    pgid: int | None = None
    sasl_port: int | None = None
    sasl_users: tuple[str, ...] = ()
    _process: subprocess.Popen | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def sasl_bootstrap(self) -> str | None:
        """Address of the SASL_PLAINTEXT listener, when the broker has one."""
        return f"{HOST}:{self.sasl_port}" if self.sasl_port else None

    def is_running(self) -> bool:
        if self._process is not None:
            return self._process.poll() is None
        return _is_our_broker(self.pid, self.run_dir)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the broker: SIGTERM, up to ``timeout`` s for a clean shutdown, then SIGKILL."""
        _terminate(self.pid, self.pgid or self.pid, timeout, self._process)
        state = read_state(self.run_dir)
        if state and state.get("pid") == self.pid:
            state["pid"] = None
            state["stopped_at"] = time.time()
            _write_state(self.run_dir, state)
            for name in (BOOTSTRAP_FILE, SASL_BOOTSTRAP_FILE):
                with contextlib.suppress(FileNotFoundError):
                    (self.run_dir / name).unlink()


def status(run_dir: Path | None = None) -> Broker | None:
    """The broker recorded in ``run_dir`` if it is running, else None."""
    run_dir = Path(run_dir or default_run_dir()).resolve()
    state = read_state(run_dir)
    if not state or not _is_our_broker(state.get("pid"), run_dir):
        return None
    return Broker(
        bootstrap=state["bootstrap"],
        pid=state["pid"],
        pgid=state.get("pgid"),
        run_dir=run_dir,
        log_path=run_dir / SERVER_LOG,
        port=state["port"],
        controller_port=state["controller_port"],
        kafka_version=state.get("kafka_version"),
        sasl_port=state.get("sasl_port"),
        sasl_users=tuple(state.get("sasl_users") or ()),
    )


# --------------------------------------------------------------------------- start/stop


def sasl_properties(sasl_port: int, users: dict[str, str]) -> dict[str, str]:
    """A SASL_PLAINTEXT listener on loopback: SCRAM (users stored at format time) and PLAIN (users in its JAAS)."""
    prefix = f"listener.name.{SASL_LISTENER.lower()}"
    plain_users = " ".join(f'user_{name}="{password}"' for name, password in sorted(users.items()))
    props = {
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        f"{prefix}.plain.sasl.jaas.config": (
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        ),
    }
    for mechanism in SCRAM_MECHANISMS:
        props[f"{prefix}.{mechanism.lower()}.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )
    return props


def scram_arguments(users: dict[str, str]) -> list[str]:
    """``StorageTool format`` arguments that create each user's SCRAM credentials."""
    args = []
    for name, password in sorted(users.items()):
        for mechanism in SCRAM_MECHANISMS:
            args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return args


def _check_sasl_users(users: dict[str, str]) -> None:
    for name, password in users.items():
        # The storage tool's "[name=...,password=...]" syntax has no escaping.
        if not name or not password or any(c in name + password for c in ',[]="\\ \n'):
            raise KafkaError(f'SASL user {name!r}: name and password must be non-empty, without , [ ] = " \\ or spaces')


def server_properties(
    port: int,
    controller_port: int,
    data_dir: Path,
    sasl_port: int | None = None,
    sasl_users: dict[str, str] | None = None,
) -> str:
    """Broker configuration for a single combined broker+controller node (plus a SASL listener if asked)."""
    listeners = f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}"
    advertised = f"PLAINTEXT://{HOST}:{port}"
    protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    if sasl_port:
        listeners += f",{SASL_LISTENER}://{HOST}:{sasl_port}"
        advertised += f",{SASL_LISTENER}://{HOST}:{sasl_port}"
        protocols += f",{SASL_LISTENER}:{SASL_LISTENER}"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": protocols,
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # Single node: every internal topic has one replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Few internal partitions: faster first group join / first transaction.
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        # Topics are created explicitly (``milestream topics apply``, test fixtures).
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    if sasl_port:
        props.update(sasl_properties(sasl_port, sasl_users or {}))
    header = "# Written by deploy/local_kafka.py; rewritten on every start.\n"
    return header + "".join(f"{key}={value}\n" for key, value in props.items())


def _format_storage(
    java: str, libs: Path, run_dir: Path, props_path: Path, cluster_id: str, sasl_users: dict[str, str] | None = None
) -> None:
    cmd = [
        java,
        *TOOL_JVM_OPTS,
        "-cp",
        str(libs / "*"),
        STORAGE_TOOL_MAIN,
        "format",
        "--standalone",
        "--cluster-id",
        cluster_id,
        "--config",
        str(props_path),
        *scram_arguments(sasl_users or {}),
    ]
    result = subprocess.run(
        cmd,
        cwd=run_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if result.returncode != 0:
        shown = [a if not a.startswith(SCRAM_MECHANISMS) else a.split("[", 1)[0] + "[...]" for a in cmd]
        raise BrokerStartError(
            f"formatting Kafka storage failed (exit {result.returncode}): {shlex.join(shown)}",
            _tail_text(result.stdout, LOG_TAIL_LINES),
        )


def _meta_property(data_dir: Path, key: str) -> str | None:
    try:
        lines = (data_dir / "meta.properties").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == key:
            return value.strip()
    return None


def _controller_port_in(props_path: Path) -> int | None:
    """The controller port configured in an existing server.properties, if any."""
    try:
        lines = props_path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "controller.quorum.bootstrap.servers":
            try:
                return int(value.strip().rsplit(":", 1)[1])
            except (IndexError, ValueError):
                return None
    return None


def _pick_port(requested: int | None, previous: int | None, avoid: set[int]) -> int:
    if requested:
        if not port_is_free(requested):
            raise KafkaError(f"port {HOST}:{requested} is already in use")
        return requested
    if previous and previous not in avoid and port_is_free(previous):
        return previous
    while True:
        port = free_port()
        if port not in avoid:
            return port


def start(
    run_dir: Path | str,
    port: int | None = None,
    *,
    fresh: bool = False,
    timeout: float = START_TIMEOUT,
    sasl: dict[str, str] | None = None,
    jvm_options: tuple[str, ...] = (),
) -> Broker:
    """Start a broker whose config, data and logs live in ``run_dir``.

    ``jvm_options`` come after the defaults and before ``MILESTREAM_KAFKA_JAVA_OPTS``.

    The client port is ``port`` if given, else the port used last time in this
    run dir if it is free, else any free port. Existing data is kept unless
    ``fresh``. Blocks until the broker serves clients; raises
    ``BrokerStartError`` (with the log tail) if it does not within ``timeout`` s.
    Call ``fetch()`` first.

    ``sasl`` (user name -> password) adds a SASL_PLAINTEXT listener on another
    free port (``Broker.sasl_bootstrap``) accepting those users with
    SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN. SCRAM credentials are written when
    the storage is formatted, so other users on existing data need ``fresh``.
    """
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    libs = libs_dir()
    version = kafka_version(libs)
    if version is None:
        raise KafkaError(f"no Kafka jars in {libs}; run fetch() first")
    if status(run_dir) is not None:
        raise KafkaError(f"a broker is already running in {run_dir}")

    data_dir = run_dir / DATA_DIR
    previous = read_state(run_dir) or {}
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
        for name in (SERVER_LOG, STDOUT_LOG, STDERR_LOG):
            for path in run_dir.glob(name + "*"):
                path.unlink()
        previous = {}
    formatted = (data_dir / "meta.properties").is_file()
    sasl_users = dict(sasl or {})
    _check_sasl_users(sasl_users)
    if formatted and sorted(sasl_users) != sorted(previous.get("sasl_users") or []):
        raise KafkaError(
            f"the storage in {run_dir} was formatted with SASL users {sorted(previous.get('sasl_users') or [])}, "
            f"not {sorted(sasl_users)}; start with fresh=True (--fresh) to discard the data"
        )
    recorded_controller_port = previous.get("controller_port") or _controller_port_in(run_dir / PROPERTIES_FILE)

    # The controller's address is stored in the metadata log (dynamic quorum), so
    # an existing data dir must keep its controller port.
    if formatted and recorded_controller_port:
        controller_port = int(recorded_controller_port)
        if not port_is_free(controller_port):
            raise KafkaError(
                f"controller port {HOST}:{controller_port} recorded in {run_dir} is in use; "
                "free it or start with fresh=True (--fresh) to discard the data"
            )
    else:
        controller_port = _pick_port(None, None, {port} if port else set())
    port = _pick_port(port, previous.get("port"), {controller_port})
    sasl_port = _pick_port(None, previous.get("sasl_port"), {controller_port, port}) if sasl_users else None

    props_path = run_dir / PROPERTIES_FILE
    props_path.write_text(server_properties(port, controller_port, data_dir, sasl_port, sasl_users))
    props_path.chmod(0o600)  # PLAIN passwords are in it

    java = _java()
    cluster_id = _meta_property(data_dir, "cluster.id") if formatted else None
    if not formatted:
        cluster_id = new_cluster_id()
        _format_storage(java, libs, run_dir, props_path, cluster_id, sasl_users)

    log_path = run_dir / SERVER_LOG
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    extra_opts = shlex.split(os.environ.get(ENV_JAVA_OPTS, ""))
    cmd = [
        java,
        *HEAP_OPTS,
        *JVM_OPTS,
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={run_dir}",
        *jvm_options,
        *extra_opts,
        "-cp",
        str(libs / "*"),
        BROKER_MAIN,
        str(props_path),
    ]
    # stdout/stderr hold only the latest run; server.log keeps the history.
    with open(run_dir / STDOUT_LOG, "wb") as out, open(run_dir / STDERR_LOG, "wb") as err:
        process = subprocess.Popen(
            cmd,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # own process group: stop() signals the whole group
            close_fds=True,
        )
    pgid = process.pid
    bootstrap = f"{HOST}:{port}"
    state = {
        "pid": process.pid,
        "pgid": pgid,
        "bootstrap": bootstrap,
        "port": port,
        "controller_port": controller_port,
        "sasl_port": sasl_port,
        "sasl_users": sorted(sasl_users),
        "cluster_id": cluster_id,
        "kafka_version": version,
        "run_dir": str(run_dir),
        "log_path": str(log_path),
        "started_at": time.time(),
        "command": cmd,
    }
    _write_state(run_dir, state)
    broker = Broker(
        bootstrap=bootstrap,
        pid=process.pid,
        pgid=pgid,
        run_dir=run_dir,
        log_path=log_path,
        port=port,
        controller_port=controller_port,
        kafka_version=version,
        sasl_port=sasl_port,
        sasl_users=tuple(sorted(sasl_users)),
        _process=process,
    )
    try:
        _wait_until_ready(process, port, log_path, log_offset, timeout)
    except BaseException:
        broker.stop(timeout=10)
        raise
    (run_dir / BOOTSTRAP_FILE).write_text(bootstrap + "\n")
    if broker.sasl_bootstrap:
        (run_dir / SASL_BOOTSTRAP_FILE).write_text(broker.sasl_bootstrap + "\n")
    return broker


def _log_says_started(log_path: Path, offset: int) -> bool:
    try:
        with open(log_path, "rb") as handle:
            if handle.seek(0, os.SEEK_END) < offset:
                offset = 0  # the log was rolled over
            handle.seek(offset)
            return STARTED_MESSAGE.encode() in handle.read()
    except OSError:
        return False


def _wait_until_ready(process: subprocess.Popen, port: int, log_path: Path, offset: int, timeout: float) -> None:
    run_dir = log_path.parent
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise BrokerStartError(
                f"Kafka broker exited with code {code} during start-up", log_tail(run_dir, server_log_start=offset)
            )
        if _log_says_started(log_path, offset) and _accepts_connections(port):
            return
        if time.monotonic() >= deadline:
            raise BrokerStartError(
                f"Kafka broker not ready on {HOST}:{port} after {timeout:g} s",
                log_tail(run_dir, server_log_start=offset),
            )
        time.sleep(0.2)


def stop(run_dir: Path | str | None = None, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the broker recorded in ``run_dir``; False if none was running."""
    run_dir = Path(run_dir or default_run_dir()).resolve()
    broker = status(run_dir)
    if broker is None:
        return False
    broker.stop(timeout=timeout)
    return True


# --------------------------------------------------------------------------- CLI


def _cmd_fetch(args: argparse.Namespace) -> int:
    started = time.monotonic()
    libs = fetch(force=args.force)
    print(f"Kafka {kafka_version(libs)} jars in {libs} ({time.monotonic() - started:.1f} s)")
    return 0


def _sasl_users(specs: list[str]) -> dict[str, str]:
    users = {}
    for spec in specs:
        name, sep, password = spec.partition(":")
        if not sep:
            raise KafkaError(f"--sasl {spec!r}: expected USER:PASSWORD")
        users[name] = password
    _check_sasl_users(users)
    return users


def _cmd_up(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or default_run_dir()).resolve()
    sasl = _sasl_users(args.sasl)
    running = status(run_dir)
    if running is not None:
        if args.fresh:
            print(f"stopping the running broker (pid {running.pid}) for --fresh", file=sys.stderr)
            running.stop()
        elif args.port and args.port != running.port:
            print(
                f"a broker is already running on {running.bootstrap} (pid {running.pid}); "
                f"run 'down' first to move it to port {args.port}",
                file=sys.stderr,
            )
            return 2
        elif sorted(sasl) != sorted(running.sasl_users):
            print(
                f"a broker is already running on {running.bootstrap} (pid {running.pid}) with SASL users "
                f"{list(running.sasl_users)}; run 'down' first (and 'up --fresh' to change the users)",
                file=sys.stderr,
            )
            return 2
        else:
            print(f"already running (pid {running.pid}), logs: {running.log_path}", file=sys.stderr)
            if running.sasl_bootstrap:
                print(f"SASL_PLAINTEXT ({', '.join(SASL_MECHANISMS)}) on {running.sasl_bootstrap}", file=sys.stderr)
            print(running.bootstrap)
            return 0
    port = args.port
    if port is None:
        # start() reuses the last port if it is free; otherwise prefer the default one.
        previous = {} if args.fresh else (read_state(run_dir) or {})
        last = previous.get("port")
        if not (last and port_is_free(last)) and port_is_free(DEFAULT_PORT):
            port = DEFAULT_PORT
    fetch()
    started = time.monotonic()
    try:
        broker = start(run_dir, port, fresh=args.fresh, timeout=args.timeout, sasl=sasl)
    except KafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Kafka {broker.kafka_version} started in {time.monotonic() - started:.1f} s "
        f"(pid {broker.pid}), logs: {broker.log_path}",
        file=sys.stderr,
    )
    if broker.sasl_bootstrap:
        print(f"SASL_PLAINTEXT ({', '.join(SASL_MECHANISMS)}) on {broker.sasl_bootstrap}", file=sys.stderr)
    print(broker.bootstrap)
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or default_run_dir()).resolve()
    if stop(run_dir, timeout=args.timeout):
        print("stopped")
    else:
        print("not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or default_run_dir()).resolve()
    broker = status(run_dir)
    if broker is None:
        print("stopped")
        return 1
    sasl = f", SASL_PLAINTEXT on {broker.sasl_bootstrap}" if broker.sasl_bootstrap else ""
    print(f"running {broker.bootstrap} (pid {broker.pid}, Kafka {broker.kafka_version}, run dir {run_dir}{sasl})")
    return 0


def _follow(path: Path) -> None:
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        while True:
            chunk = handle.read()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            else:
                if path.exists() and path.stat().st_size < handle.tell():
                    handle.seek(0)  # rolled over
                time.sleep(0.5)


def _cmd_logs(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir or default_run_dir()).resolve()
    log_path = run_dir / SERVER_LOG
    if not log_path.exists():
        print(f"no log at {log_path}", file=sys.stderr)
        return 1
    text = tail_file(log_path, args.lines)
    if text:
        print(text)
    if args.follow:
        with contextlib.suppress(KeyboardInterrupt):
            _follow(log_path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="local_kafka.py",
        description="Run a single-node Apache Kafka broker (KRaft) on 127.0.0.1 without Docker.",
        epilog=f"Jars and the default run dir live under ${ENV_BASE_DIR} (default: {REPO_ROOT / '.local' / 'kafka'}).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download the broker jars from Maven Central")
    p.add_argument("--force", action="store_true", help="download again even if up to date")
    p.set_defaults(func=_cmd_fetch)

    run_dir_help = "broker folder (config, data, logs); default: <base>/run"
    p = sub.add_parser("up", help="start the broker (no-op if it is running); prints the bootstrap address")
    p.add_argument(
        "--port", type=int, help=f"client port (default: last one used, else {DEFAULT_PORT} if free, else any)"
    )
    p.add_argument("--fresh", action="store_true", help="discard existing data and logs first")
    p.add_argument("--timeout", type=float, default=START_TIMEOUT, help="seconds to wait for start-up")
    p.add_argument("--run-dir", help=run_dir_help)
    p.add_argument(
        "--sasl",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="add a SASL_PLAINTEXT listener (SCRAM-SHA-256/512, PLAIN) with this user; repeatable; "
        "users are fixed when the storage is formatted (use with --fresh to change them)",
    )
    p.set_defaults(func=_cmd_up)

    p = sub.add_parser("down", help="stop the broker")
    p.add_argument("--timeout", type=float, default=STOP_TIMEOUT, help="seconds to wait before SIGKILL")
    p.add_argument("--run-dir", help=run_dir_help)
    p.set_defaults(func=_cmd_down)

    p = sub.add_parser("status", help="print running/stopped and the bootstrap address (exit 1 if stopped)")
    p.add_argument("--run-dir", help=run_dir_help)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("logs", help="print the end of the broker log")
    p.add_argument("-n", "--lines", type=int, default=100, help="number of lines (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--run-dir", help=run_dir_help)
    p.set_defaults(func=_cmd_logs)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KafkaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
