"""Soak benchmark with faults: the whole service under load for a long time, hit by the
failures it must survive, with an exact account of every event.

    .venv/bin/python bench/soak.py [--duration 1200] [--events-per-s 2000]
        [--predict-per-s 200] [--candidates 100]

Starts a stack of its own (Kafka and Redis on free ports, under .stack/soak, wiped first):
two `headrace learn` processes for the shard (one active, one standby), two API replicas
(`headrace serve`, one worker each, as docs/operations.md lays out production), the
simulator (`headrace simulate` at --events-per-s) and an open-loop /predict client
(bench/load_client.py at --predict-per-s, round robin over the replicas). The benchmark is
their process manager: whatever exits is started again half a second later.

Four faults, evenly spaced over the run: the broker restarted, Redis restarted (killed by
default: it comes back from its append-only file), the active learner killed with
SIGKILL (the standby takes over), one API replica killed with SIGKILL.

When the simulator is done, it waits for the learner to catch up, stops everything and
prints: target and achieved rates; events produced, learned, dead-lettered and
quarantined; events lost and learned twice (bench/soak_accounting.py: the produced event
ids against the ids the committed state took in, followed as the learner publishes them,
and the learner's committed counters against the produced events by type); per fault,
the /predict answers (ok, 5xx, timeouts, connection errors), how stale the model behind
them was, and the longest wait for a new model version. Logs stay in .stack/soak/logs.
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson
from pydantic import SecretStr

from bench.load_client import read_log
from bench.procstat import busy_s
from bench.serve_setup import bodies
from bench.soak_audit import Audit, audit
from bench.soak_faults import (
    Fault,
    kill_active_learner,
    kill_api_replica,
    restart_broker,
    restart_redis,
)
from bench.soak_procs import ROOT, CpuMeter, Supervised, Supervisor
from bench.soak_report import print_report
from bench.soak_watch import RedisWatch
from headrace.devstack import kafka_local, redis_local, stack
from headrace.sim.simulator import SimulatorConfig
from learner.redisconn import connect
from stream.settings import StreamSettings
from tests.learner.harness import caught_up, end_offsets, shipped_env
from tests.support import free_port, verifier_env

SEED = 7


def soak_settings(stack_dir: Path) -> StreamSettings:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    kafka, controller, redis_port = sorted(ports)
    return StreamSettings(
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        controller_port=controller,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_password=SecretStr(secrets.token_urlsafe(32)),
        stack_dir=str(stack_dir),
        kafka_cache_dir=str(ROOT / ".stack"),
        key_prefix="soak",
    )


def wait_ready(ports: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = set(ports)
    while pending:
        for port in list(pending):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    pending.discard(port)
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise SystemExit(f"API replicas on {sorted(pending)} not ready after {timeout} s")
        time.sleep(0.1)


def wait_caught_up(stream: StreamSettings, timeout: float) -> bool:
    client = connect(stream)
    try:
        ends = end_offsets(stream)
        deadline = time.monotonic() + timeout
        while not caught_up(client, stream, ends):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
        return True
    finally:
        client.close()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds (default 1200)")
    parser.add_argument("--events-per-s", type=float, default=2000.0)
    parser.add_argument("--predict-per-s", type=float, default=200.0)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument(
        "--timeout", type=float, default=1.0, help="a /predict slower than this is a timeout"
    )
    parser.add_argument("--malformed-rate", type=float, default=0.001)
    parser.add_argument("--attack-at", type=int, default=None, help="records before a bot attack")
    parser.add_argument("--broker-signal", choices=["term", "kill"], default="term")
    parser.add_argument("--redis-signal", choices=["term", "kill"], default="kill")
    parser.add_argument("--catch-up-timeout", type=float, default=600.0)
    return parser.parse_args()


class Soak:
    """One run: the stack, the supervised processes, the simulator and the load client."""

    def __init__(self, args: argparse.Namespace, stack_dir: Path) -> None:
        self.args = args
        self.settings = soak_settings(stack_dir)
        self.logs = stack_dir / "logs"
        self.learner_env = shipped_env(
            self.settings, snapshot_dir=str(stack_dir / "snapshots"), snapshot_interval_s=60
        )
        # The API and the simulator verify or sign nothing: no signing key for them.
        self.api_env = verifier_env(self.learner_env)
        self.api_ports = [free_port(), free_port()]
        self.learners = [
            Supervised(n, "learners", ["learn"], self.learner_env, self.log(n))
            for n in ("learner-a", "learner-b")
        ]
        self.apis = [
            Supervised(
                f"api-{i}",
                "API replicas",
                ["serve", "--port", str(port)],
                self.api_env,
                self.log(f"api-{i}"),
            )
            for i, port in enumerate(self.api_ports)
        ]
        self.helpers: dict[int, str] = {}
        """The simulator's and the load client's pids, for the CPU account."""
        self.cpu = CpuMeter(self._servers)
        self.supervisor = Supervisor([*self.learners, *self.apis], self.cpu)
        self.watch = RedisWatch(self.settings)
        self.config = SimulatorConfig(
            seed=SEED, malformed_rate=args.malformed_rate, attack_at=args.attack_at
        )
        self.bodies, self.requests = stack_dir / "bodies.json", stack_dir / "requests.csv"
        self.simulator: subprocess.Popen[bytes] | None = None
        self.load: subprocess.Popen[bytes] | None = None

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _servers(self) -> dict[int, str]:
        found = {
            kafka_local.running_pid(self.settings): "Kafka",
            redis_local.running_pid(self.settings): "Redis",
        }
        return {**{pid: role for pid, role in found.items() if pid is not None}, **self.helpers}

    def start_simulator(self) -> None:
        args = self.args
        argv = [
            "simulate",
            "--seed",
            str(SEED),
            "--rate",
            str(args.events_per_s),
            "--duration",
            str(args.duration),
            "--malformed-rate",
            str(args.malformed_rate),
            "--quiet",
            "--json",
            *(["--attack-at", str(args.attack_at)] if args.attack_at is not None else []),
        ]
        with self.log("simulator").open("ab") as err:
            self.simulator = subprocess.Popen(
                [sys.executable, "-m", "headrace.cli", *argv],
                cwd=ROOT,
                env=self.api_env,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.helpers[self.simulator.pid] = "simulator"

    def start_load(self, seconds: float) -> None:
        args = self.args
        self.bodies.write_bytes(
            orjson.dumps([b.decode() for b in bodies(self.config, args.candidates, 200)])
        )
        argv = [
            str(self.bodies),
            *(f"http://127.0.0.1:{p}" for p in self.api_ports),
            "--rate",
            str(args.predict_per_s),
            "--duration",
            f"{seconds:.3f}",
            "--timeout",
            str(args.timeout),
            "--log",
            str(self.requests),
        ]
        self.load = subprocess.Popen(
            [sys.executable, "-m", "bench.load_client", *argv], cwd=ROOT, stdout=subprocess.PIPE
        )
        self.helpers[self.load.pid] = "load client"

    def faults(self) -> list[Callable[[], Fault]]:
        args = self.args
        return [
            lambda: restart_broker(self.settings, ROOT / ".stack", args.broker_signal),
            lambda: restart_redis(self.settings, args.redis_signal),
            lambda: kill_active_learner(self.watch, self.learners),
            lambda: kill_api_replica(self.apis[0], self.api_ports[0]),
        ]

    def run(self) -> None:
        args = self.args
        print(stack.up(self.settings))
        self.supervisor.start()
        self.watch.start()
        self.start_simulator()
        t0, busy0, self0 = time.time(), busy_s(), time.process_time()
        cpu0 = self.cpu.by_role()
        wait_ready(self.api_ports, 120)
        load_start, end = time.time(), t0 + args.duration
        self.start_load(end - load_start)
        # Evenly spaced over the time under load.
        injected: list[Fault] = []
        schedule = self.faults()
        for k, inject in enumerate(schedule, 1):
            due = load_start + (end - load_start) * k / (len(schedule) + 1)
            time.sleep(max(0.0, due - time.time()))
            injected.append(inject())
            fault = injected[-1]
            print(f"{time.time() - t0:7.1f} s  {fault.name} ({fault.detail})", flush=True)
        assert self.simulator is not None and self.load is not None
        sim_out, _ = self.simulator.communicate(timeout=args.duration * 2 + 300)
        produced = json.loads(sim_out) if self.simulator.returncode == 0 else None
        load_out, _ = self.load.communicate(timeout=args.duration + 300)
        run_end, busy1, self1 = time.time(), busy_s(), time.process_time()
        cpu1 = self.cpu.by_role()
        print(f"{run_end - t0:7.1f} s  simulator and load done; waiting for the learner")
        caught = wait_caught_up(self.settings, args.catch_up_timeout)
        caught_at = time.time()
        self.supervisor.stop()
        leases = self.watch.leases_granted()
        self.watch.stop()
        result: Audit = audit(self.settings, self.config, produced, self.watch)
        print_report(
            args=args,
            audit=result,
            faults=injected,
            watch=self.watch,
            outcomes=read_log(self.requests),
            load_summary=orjson.loads(load_out.splitlines()[-1]) if load_out else None,
            windows_from=(load_start, end + args.timeout),
            exits=self.supervisor.exits,
            timing={
                "started": t0,
                "ended": run_end,
                "caught_up": caught_at if caught else None,
                "busy": (busy1 - busy0) / (run_end - t0) / (os.cpu_count() or 1),
                "leases": leases,
                "cpu": {
                    **{role: used - cpu0.get(role, 0.0) for role, used in cpu1.items()},
                    "this benchmark": self1 - self0,
                },
                "machine_cpu": busy1 - busy0,
            },
        )

    def close(self) -> None:
        for proc in (self.simulator, self.load):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.supervisor.stop()
        print(stack.down(self.settings))


def main() -> None:
    args = parse_args()
    stack_dir = ROOT / ".stack" / "soak"
    if stack_dir.exists():
        # A previous run's servers (found by their pid files), then its data.
        stack.down(soak_settings(stack_dir))
        shutil.rmtree(stack_dir)
    (stack_dir / "logs").mkdir(parents=True)
    soak = Soak(args, stack_dir)
    try:
        soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    main()
