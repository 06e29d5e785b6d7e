"""Local Kafka 4 brokers in KRaft mode (combined broker and controller nodes), without Docker.

One node by default; HEADRACE_KAFKA_BROKERS=3 runs three, every one a voter of the
controller quorum, so the cluster keeps working (and stays writable at min ISR 2) when one
dies. The jars and Java come from `kafka_jars`. Config, data, logs and the pid file of
each node live under `settings.stack_dir` (`kafka/` for a single node, `kafka-<i>/` for
node i of several). Every listener binds to 127.0.0.1 only. Starting, waiting and
stopping are `supervisor`'s, shared with `redis_local`.
"""

import base64
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from headrace.devstack import supervisor
from headrace.devstack.errors import StackError
from headrace.devstack.kafka_jars import check_java, ensure_libs, resource
from headrace.devstack.localproc import cmdline, require_free, require_local
from stream.probe import answering_at, brokers_registered
from stream.settings import StreamSettings


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
    def of(cls, settings: StreamSettings, node: int | None = None) -> "KafkaPaths":
        """The single broker's paths (`node` None), or those of node `node` of several."""
        root = Path(settings.stack_dir).expanduser().resolve()
        name = "kafka" if node is None else f"kafka-{node}"
        logs = root / "logs"
        return cls(
            root=root,
            config=root / name / "server.properties",
            log4j=root / name / "log4j2.properties",
            data=root / name / "data",
            logs=logs,
            out=logs / f"{name}.out",
            pid_file=root / f"{name}.pid",
        )

    @property
    def server_log(self) -> Path:
        return self.logs / self.config.parent.name / "server.log"


@dataclass(frozen=True)
class Node:
    """One broker (and controller) of the local stack."""

    id: int
    """Kafka's node.id, from 1."""
    host: str
    port: int
    controller_port: int
    paths: KafkaPaths

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def nodes(settings: StreamSettings) -> list[Node]:
    """The stack's nodes: HEADRACE_KAFKA_BROKERS of them, on the bootstrap's addresses."""
    count = settings.kafka_brokers
    addresses = settings.kafka_addresses
    if count == 1:
        host, port = addresses[0]
        return [Node(1, host, port, settings.controller_port, KafkaPaths.of(settings))]
    if len(addresses) != count:
        raise StackError(
            f"HEADRACE_KAFKA_BROKERS is {count} but HEADRACE_KAFKA_BOOTSTRAP lists "
            f"{len(addresses)} addresses",
            "list one address per broker, or just the first (the others follow it, 2 ports apart)",
        )
    return [
        Node(
            i + 1,
            host,
            port,
            settings.controller_port + 2 * i,
            KafkaPaths.of(settings, i + 1),
        )
        for i, (host, port) in enumerate(addresses)
    ]


def node(settings: StreamSettings, node_id: int) -> Node:
    return next(n for n in nodes(settings) if n.id == node_id)


def address(settings: StreamSettings) -> str:
    return ",".join(n.address for n in nodes(settings))


def check_ports(settings: StreamSettings, only: list[Node] | None = None) -> None:
    """StackError when a node's client or controller port is not a free 127.0.0.1 port."""
    every = nodes(settings)
    ports = [p for n in every for p in (n.port, n.controller_port)]
    if len(set(ports)) != len(ports):
        raise StackError(
            f"Kafka's client and controller ports overlap: {ports}",
            "set HEADRACE_CONTROLLER_PORT (and HEADRACE_KAFKA_BOOTSTRAP) so they differ",
        )
    for n in every if only is None else only:
        require_local(n.host, "HEADRACE_KAFKA_BOOTSTRAP")
        require_free(n.port, "Kafka", "HEADRACE_KAFKA_BOOTSTRAP=127.0.0.1:<port>")
        require_free(n.controller_port, "Kafka's controller", "HEADRACE_CONTROLLER_PORT=<port>")


# --- the broker ---------------------------------------------------------------------------------


def server_properties(settings: StreamSettings, node: Node) -> str:
    every = nodes(settings)
    port, cport = node.port, node.controller_port
    # Replication 3 and min ISR 2 with three or more nodes (an acknowledged write survives
    # the loss of any one broker, which may die without stopping writes); else all nodes.
    replicas = min(3, len(every))
    min_isr = 2 if replicas >= 3 else 1
    voters = ",".join(f"{n.id}@127.0.0.1:{n.controller_port}" for n in every)
    lines = [
        "# Written by headrace (headrace/devstack/kafka_local.py) on every start; edits are lost.",
        "process.roles=broker,controller",
        f"node.id={node.id}",
        # A static quorum (not a formatted --standalone one) keeps working when
        # HEADRACE_CONTROLLER_PORT changes between starts: the voter addresses are
        # read from this file each time instead of from the metadata log.
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name=PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        f"log.dirs={node.paths.data}",
        f"num.partitions={settings.partitions}",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        f"offsets.topic.replication.factor={replicas}",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"share.coordinator.state.topic.replication.factor={replicas}",
        f"share.coordinator.state.topic.min.isr={min_isr}",
        # Kafka's default, stated: the largest record batch a topic takes unless it sets its
        # own max.message.bytes. The learner reads both (stream/limits.py).
        "message.max.bytes=1048588",
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


def _new_cluster_id() -> str:
    # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes, unpadded; Kafka
    # itself never hands out ids starting with "-" (they read as options).
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _cluster_id(settings: StreamSettings) -> str:
    """The id every node of this stack is formatted with, made once and kept beside them."""
    path = Path(settings.stack_dir).expanduser().resolve() / "kafka-cluster.id"
    if settings.kafka_brokers == 1:
        return _new_cluster_id()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_new_cluster_id() + "\n")
    return path.read_text().strip()


def _format_storage(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> None:
    if (paths.data / "meta.properties").exists():
        return
    argv = [
        *_java_argv(java, settings, paths, libs),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        _cluster_id(settings),
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


def _server(node: Node) -> supervisor.Server:
    paths = node.paths

    def is_ours(pid: int) -> bool:
        argv = cmdline(pid)
        return "kafka.Kafka" in argv and str(paths.config) in argv

    return supervisor.Server(
        name="Kafka" if node.id == 1 else f"Kafka node {node.id}",
        address=node.address,
        pid_file=paths.pid_file,
        output=paths.out,
        logs_hint=f"full logs: {paths.out} and {paths.server_log}",
        is_ours=is_ours,
    )


def running_pid(settings: StreamSettings, node_id: int = 1) -> int | None:
    """Pid of this stack's broker (node `node_id`) if it runs; a stale pid file is removed."""
    return supervisor.running_pid(_server(node(settings, node_id)))


def start(
    settings: StreamSettings, *, cache_dir: str | Path | None = None, timeout: float = 60.0
) -> int:
    """Start this stack's brokers that do not run, wait until all answer; return the first
    one's pid.

    `cache_dir` is the stack folder whose jars (and Maven cache) to use, by
    default `settings.kafka_cache_dir`; tests point it at a shared one. Raises
    StackError if every broker already runs (see `running_pid`) or one does not come up.
    Several nodes start together: none answers before a majority of the quorum runs.
    """
    every = nodes(settings)
    missing = [n for n in every if supervisor.running_pid(_server(n)) is None]
    if not missing:
        pid = supervisor.running_pid(_server(every[0]))
        raise StackError(f"Kafka already runs with pid {pid}", "headrace stack down stops it")
    pids: list[int] = []
    try:
        for n in missing:
            pids.append(start_node(settings, n.id, cache_dir=cache_dir, wait=False))
        for n, pid in zip(missing, pids, strict=True):
            wait_ready(settings, pid, timeout, node_id=n.id)
        wait_registered(settings, timeout)
    except BaseException:
        for n in missing:
            stop_node(settings, n.id)
        raise
    first = supervisor.running_pid(_server(every[0]))
    assert first is not None
    return first


def missing_nodes(settings: StreamSettings) -> list[Node]:
    """The nodes of this stack that do not run."""
    return [n for n in nodes(settings) if supervisor.running_pid(_server(n)) is None]


def start_node(
    settings: StreamSettings,
    node_id: int,
    *,
    cache_dir: str | Path | None = None,
    timeout: float = 60.0,
    wait: bool = True,
) -> int:
    """Start one node (again, e.g. after it was killed); with `wait`, until it answers."""
    n = node(settings, node_id)
    paths = n.paths
    server = _server(n)
    if (pid := supervisor.running_pid(server)) is not None:
        raise StackError(f"Kafka already runs with pid {pid}", "headrace stack down stops it")
    java = check_java()
    check_ports(settings, only=[n])
    libs = ensure_libs(settings.kafka_cache_dir if cache_dir is None else cache_dir)
    paths.config.parent.mkdir(parents=True, exist_ok=True)
    paths.server_log.parent.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(server_properties(settings, n))
    paths.log4j.write_bytes(resource("log4j2.properties"))
    _format_storage(java, settings, paths, libs)
    argv = [
        *_java_argv(java, settings, paths, libs),
        "kafka.Kafka",
        str(paths.config),
    ]
    return supervisor.launch(
        server,
        argv,
        paths.root,
        (lambda pid, since: wait_ready(settings, pid, timeout, since=since, node_id=node_id))
        if wait
        else (lambda pid, since: None),
    )


def wait_ready(
    settings: StreamSettings, pid: int, timeout: float, *, since: int = 0, node_id: int = 1
) -> None:
    """Wait until the broker with this pid answers, or raise StackError with its output's tail.

    `since` is where this start's output begins in the (appended) output file.
    Its stdout holds the JVM's own errors and the broker's warnings and errors;
    server.log, named in the hint, has everything.
    """
    n = node(settings, node_id)
    supervisor.wait_answering(
        _server(n),
        pid,
        timeout,
        lambda probe_s: answering_at(n.host, n.port, timeout=probe_s),
        since=since,
        poll_s=0.25,
        slow_hint="a larger HEADRACE_KAFKA_HEAP may help on a busy machine",
    )


def wait_registered(settings: StreamSettings, timeout: float) -> None:
    """Wait until every node is a registered broker of the cluster (replication 3 needs 3)."""
    want = len(nodes(settings))
    deadline = time.monotonic() + timeout
    while (seen := brokers_registered(settings)) < want:
        if time.monotonic() > deadline:
            raise StackError(
                f"only {seen} of {want} Kafka brokers registered within {timeout:.0f} s",
                f"see the server.log of each node under {nodes(settings)[0].paths.logs}",
            )
        time.sleep(0.25)


def stop(settings: StreamSettings, *, timeout: float = 30.0) -> int | None:
    """Stop this stack's brokers (SIGTERM, SIGKILL after `timeout`), and any node of another
    shape left in its folder; return the first pid that ran."""
    # All at once: a node stopping cleanly waits on the controller quorum, which the
    # nodes stopped before it would have taken away.
    servers = _every_server(settings)
    with ThreadPoolExecutor(max_workers=len(servers) or 1) as pool:
        pids = list(pool.map(lambda server: supervisor.stop(server, timeout), servers))
    return next((pid for pid in pids if pid is not None), None)


def stop_node(settings: StreamSettings, node_id: int, *, timeout: float = 30.0) -> int | None:
    return supervisor.stop(_server(node(settings, node_id)), timeout)


def running(settings: StreamSettings) -> list[tuple[str, int | None]]:
    """(address, pid or None) of every node of this stack, and of any other node running in
    its folder (a stack started with another HEADRACE_KAFKA_BROKERS)."""
    out: list[tuple[str, int | None]] = [
        (n.address, supervisor.running_pid(_server(n))) for n in nodes(settings)
    ]
    known = {n.paths.pid_file for n in nodes(settings)}
    for server in _every_server(settings):
        if server.pid_file not in known and (pid := supervisor.running_pid(server)) is not None:
            out.append((server.address, pid))
    return out


def _every_server(settings: StreamSettings) -> list[supervisor.Server]:
    """This shape's nodes and the nodes whose pid files another shape left in the folder."""
    servers = {n.paths.pid_file: _server(n) for n in nodes(settings)}
    root = Path(settings.stack_dir).expanduser().resolve()
    for pid_file in sorted(root.glob("kafka*.pid")):
        if pid_file in servers:
            continue
        name = pid_file.stem
        index = None if name == "kafka" else int(name.rpartition("-")[2])
        paths = KafkaPaths.of(settings, index)
        servers[pid_file] = _server(Node(index or 1, "127.0.0.1", _port_of(paths), 0, paths))
    return list(servers.values())


def _port_of(paths: KafkaPaths) -> int:
    """The client port a node's last config gave it; 0 when unknown."""
    try:
        lines = paths.config.read_text().splitlines()
    except OSError:
        return 0
    prefix = "advertised.listeners=PLAINTEXT://"
    found = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
    return int(found[0].rpartition(":")[2]) if found else 0
