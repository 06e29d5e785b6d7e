"""Local Kafka 4 brokers in KRaft mode (combined broker and controller nodes), without Docker:
formatting, starting, waiting for and stopping them.

The cluster's shape (how many nodes, their ports, folders and configs, the quorum) is
`kafka_cluster`'s; the jars and Java come from `kafka_jars`. Config, data, logs and the
pid file of each node live under `settings.stack_dir` (`kafka/` for a single node,
`kafka-<i>/` for node i of several). Every listener binds to 127.0.0.1 only. Starting,
waiting and stopping are `supervisor`'s, shared with `redis_local`.
"""

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from headrace.devstack import supervisor
from headrace.devstack.errors import StackError
from headrace.devstack.kafka_cluster import (
    KafkaPaths,
    Node,
    check_ports,
    cluster_id,
    node,
    nodes,
    server_properties,
)
from headrace.devstack.kafka_jars import check_java, ensure_libs, resource
from headrace.devstack.localproc import cmdline
from stream.probe import answering_at, brokers_registered
from stream.settings import StreamSettings


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


def _format_storage(java: str, settings: StreamSettings, paths: KafkaPaths, libs: Path) -> None:
    if (paths.data / "meta.properties").exists():
        return
    argv = [
        *_java_argv(java, settings, paths, libs),
        "kafka.tools.StorageTool",
        "format",
        "-t",
        cluster_id(settings),
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
