"""One local Kafka 4 broker in KRaft mode (combined broker and controller), without Docker.

The jars come from Maven Central through `stream/localstack/pom.xml`, resolved
once into `<cache_dir>/kafka/libs` (Maven's own cache in `<cache_dir>/m2`);
`cache_dir` is the stack folder unless a caller shares another stack's jars.
Config, data, logs and the pid file live under `settings.stack_dir`. Every
listener binds to 127.0.0.1 only.

Process helpers (pid files, detached start, bounded stop, port checks) are
in `stream.localproc`, shared with `stream.redis_local`.
"""

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaError

from stream.errors import StackError
from stream.localproc import (
    cmdline,
    exited,
    locked,
    log_size,
    log_tail,
    read_pid,
    require_free,
    require_local,
    spawn,
    tcp_open,
    terminate,
)
from stream.settings import StreamSettings

MIN_JAVA = 17
LIBS_MARKER = ".pom.sha256"
"""File in the libs folder holding the sha256 of the pom the jars were resolved from."""


@dataclass(frozen=True)
class KafkaPaths:
    """Where one stack keeps its broker's files; absolute, so pid checks can match cmdlines."""

    root: Path
    config: Path
    log4j: Path
    data: Path
    logs: Path
    out: Path
    pid_file: Path

    @classmethod
    def of(cls, settings: StreamSettings) -> "KafkaPaths":
        root = Path(settings.stack_dir).expanduser().resolve()
        logs = root / "logs"
        return cls(
            root=root,
            config=root / "kafka" / "server.properties",
            log4j=root / "kafka" / "log4j2.properties",
            data=root / "kafka" / "data",
            logs=logs,
            out=logs / "kafka.out",
            pid_file=root / "kafka.pid",
        )

    @property
    def server_log(self) -> Path:
        return self.logs / "kafka" / "server.log"


def address(settings: StreamSettings) -> str:
    host, port = settings.kafka_host_port
    return f"{host}:{port}"


# --- prerequisites -----------------------------------------------------------------------------


def java_executable() -> str | None:
    """The java the broker runs on: $JAVA_HOME's if set (as Kafka's own scripts do), else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (8 for the old "1.8.0" form), None if unknown."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """The java executable, or a StackError saying how to get Java 17 or newer."""
    hint = "run scripts/bootstrap, or apt-get install openjdk-17-jre-headless"
    java = java_executable()
    if java is None:
        raise StackError("Java is not installed (Kafka 4 needs Java 17 or newer)", hint)
    major = java_major(java)
    if major is None:
        raise StackError(f"could not tell the version of {java} (`java -version`)", hint)
    if major < MIN_JAVA:
        raise StackError(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer", hint)
    return java


def check_maven(cache_dir: str | Path) -> None:
    """Maven is needed only while the jars are not resolved yet; then a StackError if missing."""
    if not libs_ready(cache_dir) and shutil.which("mvn") is None:
        raise StackError(
            "Maven (mvn) is not installed; it fetches the Kafka jars once",
            "run scripts/bootstrap, or apt-get install maven",
        )


def check_ports(settings: StreamSettings) -> None:
    """StackError when the broker's or controller's port is not a free 127.0.0.1 port."""
    host, port = settings.kafka_host_port
    require_local(host, "HEADRACE_KAFKA_BOOTSTRAP")
    if port == settings.controller_port:
        raise StackError(
            f"Kafka's client and controller ports are both {port}",
            "set HEADRACE_CONTROLLER_PORT to another port",
        )
    require_free(port, "Kafka", "HEADRACE_KAFKA_BOOTSTRAP=127.0.0.1:<port>")
    require_free(settings.controller_port, "Kafka's controller", "HEADRACE_CONTROLLER_PORT=<port>")


# --- jars ---------------------------------------------------------------------------------------


def _resource(name: str) -> bytes:
    return (resources.files("stream") / "localstack" / name).read_bytes()


def libs_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir).expanduser().resolve() / "kafka" / "libs"


def _pom_sha256() -> str:
    return hashlib.sha256(_resource("pom.xml")).hexdigest()


def libs_ready(cache_dir: str | Path) -> bool:
    """True when the jars were resolved from the current pom (then no Maven run is needed)."""
    marker = libs_dir(cache_dir) / LIBS_MARKER
    try:
        return marker.read_text().strip() == _pom_sha256()
    except OSError:
        return False


def ensure_libs(cache_dir: str | Path, *, timeout: float = 900.0) -> Path:
    """Resolve the broker's jars into `<cache_dir>/kafka/libs` unless already there; return it.

    Safe to call from several processes at once: a file lock makes one of them
    resolve while the others wait and then find the marker.
    """
    libs = libs_dir(cache_dir)
    if libs_ready(cache_dir):
        return libs
    check_maven(cache_dir)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    with locked(work / ".libs.lock"):
        if libs_ready(cache_dir):
            return libs
        _resolve(libs, timeout)
    return libs


def _resolve(libs: Path, timeout: float) -> None:
    work = libs.parent
    cache = work.parent
    pom = work / "pom.xml"
    pom.write_bytes(_resource("pom.xml"))
    # Resolve next to the live folder and swap at the end, so an interrupted
    # download never leaves a half-filled libs folder that looks complete.
    partial = work / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log = cache / "logs" / "maven.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
        f"-Dmaven.repo.local={cache / 'm2'}",
    ]
    hint = (
        "the first start downloads about 60 MB from Maven Central: check the network or "
        f"the proxy in ~/.m2/settings.xml (Maven's output: {log})"
    )
    try:
        with log.open("wb") as out:
            done = subprocess.run(
                argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"Maven did not resolve the Kafka jars within {timeout:.0f} s", hint
        ) from exc
    if done.returncode != 0:
        raise StackError(
            f"Maven could not resolve the Kafka jars (exit {done.returncode}):\n{log_tail(log)}",
            hint,
        )
    if not any(partial.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven finished but left no Kafka jar in {partial}", hint)
    (partial / LIBS_MARKER).write_text(_pom_sha256() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)


# --- the broker ---------------------------------------------------------------------------------


def server_properties(settings: StreamSettings, paths: KafkaPaths) -> str:
    _, port = settings.kafka_host_port
    cport = settings.controller_port
    lines = [
        "# Written by headrace (stream/kafka_local.py) on every start; edits are lost.",
        "process.roles=broker,controller",
        "node.id=1",
        # A static quorum (not a formatted --standalone one) keeps working when
        # HEADRACE_CONTROLLER_PORT changes between starts: the voter address is
        # read from this file each time instead of from the metadata log.
        f"controller.quorum.voters=1@127.0.0.1:{cport}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={paths.data}",
        f"num.partitions={settings.partitions}",
        # One broker: every internal topic must be satisfiable by a single replica.
        "default.replication.factor=1",
        "min.insync.replicas=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Fewer offset partitions make the first consumer group (in every test run) quicker.
        "offsets.topic.num.partitions=10",
        # Consumers join at once instead of waiting 3 s for more members.
        "group.initial.rebalance.delay.ms=0",
        # After a crash the restarted broker must wait out its dead incarnation's
        # session before it may register again: 5 s instead of the default 9 s.
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=5000",
    ]
    return "\n".join(lines) + "\n"


def _java_argv(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> list[str]:
    heap = settings.kafka_heap
    return [
        java,
        f"-Xmx{heap}",
        f"-Xms{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.log4j}",
        f"-Dkafka.logs.dir={paths.logs / 'kafka'}",
        "-cp",
        f"{libs}/*",
    ]


def _cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, unpadded; Kafka
    # itself never hands out ids starting with "-" (they read as options).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _format_storage(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> None:
    if (paths.data / "meta.properties").exists():
        return
    argv = [
        *_java_argv(java, settings, paths, libs),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _cluster_id(),
        "-c",
        str(paths.config),
        "-g",
    ]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StackError("formatting Kafka's storage took over 120 s", str(paths.data)) from exc
    if done.returncode != 0:
        output = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise StackError(
            f"formatting Kafka's storage in {paths.data} failed "
            f"(exit {done.returncode}):\n{output}",
            f"if that folder holds an old or broken broker, remove {paths.data} (its data is lost)",
        )


def running_pid(settings: StreamSettings) -> int | None:
    """Pid of this stack's broker if it runs; a stale pid file is removed."""
    paths = KafkaPaths.of(settings)
    pid = read_pid(paths.pid_file)
    if pid is None:
        return None
    argv = cmdline(pid)
    if exited(pid) or "kafka.Kafka" not in argv or str(paths.config) not in argv:
        paths.pid_file.unlink(missing_ok=True)
        return None
    return pid


def answering(settings: StreamSettings, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request (not just accepts connections)."""
    host, port = settings.kafka_host_port
    # A plain connect first: kafka-python logs every refused connection loudly.
    if not tcp_open(host, port, timeout):
        return False
    millis = max(int(timeout * 1000), 100)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=f"{host}:{port}",
            client_id="headrace-stack",
            request_timeout_ms=millis,
            bootstrap_timeout_ms=millis,
            reconnect_backoff_max_ms=200,
        )
        try:
            admin.list_topics()
        finally:
            admin.close()
    except (KafkaError, OSError):
        return False
    return True


def start(
    settings: StreamSettings, *, cache_dir: str | Path | None = None, timeout: float = 60.0
) -> int:
    """Start this stack's broker and wait until it answers; return its pid.

    `cache_dir` is the stack folder whose jars (and Maven cache) to use, by
    default `settings.stack_dir`; tests point it at a shared one. Raises
    StackError if the broker already runs (see `running_pid`) or does not come up.
    """
    paths = KafkaPaths.of(settings)
    if (pid := running_pid(settings)) is not None:
        raise StackError(f"Kafka already runs with pid {pid}", "headrace stack down stops it")
    java = check_java()
    check_ports(settings)
    libs = ensure_libs(settings.kafka_cache_dir if cache_dir is None else cache_dir)
    paths.config.parent.mkdir(parents=True, exist_ok=True)
    (paths.logs / "kafka").mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, paths))
    paths.log4j.write_bytes(_resource("log4j2.properties"))
    _format_storage(java, settings, paths, libs)
    argv = [*_java_argv(java, settings, paths, libs), "kafka.Kafka", str(paths.config)]
    since = log_size(paths.out)
    pid = spawn(argv, log=paths.out, cwd=paths.root)
    paths.pid_file.write_text(f"{pid}\n")
    try:
        wait_ready(settings, pid, timeout, since=since)
    except BaseException:
        # Never leave a half-started broker behind a failed (or interrupted) start.
        terminate(pid, 10.0)
        paths.pid_file.unlink(missing_ok=True)
        raise
    return pid


def wait_ready(settings: StreamSettings, pid: int, timeout: float, *, since: int = 0) -> None:
    """Wait until the broker with this pid answers, or raise StackError with its output's tail.

    `since` is where this start's output begins in the (appended) output file.
    Its stdout holds the JVM's own errors and the broker's warnings and errors;
    server.log, named in the hint, has everything.
    """
    paths = KafkaPaths.of(settings)
    deadline = time.monotonic() + timeout
    while True:
        if exited(pid):
            raise StackError(
                f"Kafka (pid {pid}) exited during start-up:\n{log_tail(paths.out, since=since)}",
                f"full logs: {paths.out} and {paths.server_log}",
            )
        remaining = deadline - time.monotonic()
        if answering(settings, timeout=min(3.0, max(remaining, 0.5))):
            return
        if time.monotonic() >= deadline:
            raise StackError(
                f"Kafka (pid {pid}) did not answer on {address(settings)} within {timeout:.0f} s:\n"
                f"{log_tail(paths.out, since=since)}",
                f"full logs: {paths.out} and {paths.server_log}; "
                f"a larger HEADRACE_KAFKA_HEAP may help on a busy machine",
            )
        time.sleep(0.25)


def stop(settings: StreamSettings, *, timeout: float = 30.0) -> int | None:
    """Stop this stack's broker (SIGTERM, SIGKILL after `timeout`); return its pid if it ran."""
    paths = KafkaPaths.of(settings)
    pid = running_pid(settings)
    if pid is not None:
        terminate(pid, timeout)
    paths.pid_file.unlink(missing_ok=True)
    return pid
