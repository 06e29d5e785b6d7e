"""The soak benchmark's processes, kept running as a process manager (systemd, Kubernetes)
would: a process that exits is started again after `RESTART_DELAY_S`, and every exit is
recorded, with whether the benchmark caused it.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parents[1]

RESTART_DELAY_S: Final = 0.5
"""systemd's RestartSec is 0.1 s, Kubernetes backs off from 10 s: a quick manager."""


@dataclass(frozen=True)
class Exit:
    name: str
    at: float
    pid: int
    code: int
    caused: bool
    """The benchmark killed it (a fault), rather than it dying by itself."""


@dataclass
class Supervised:
    """`headrace ARGS` as a process that the supervisor starts again whenever it exits."""

    name: str
    role: str
    """What it is, for the CPU account (learners, API replicas)."""
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    stopping: bool = False
    killed_pid: int | None = None
    exits: list[Exit] = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "headrace.cli", *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started_at = time.time()
        self.restart_at = None

    def kill(self) -> int | None:
        """kill -9, as a fault: the supervisor starts it again."""
        pid = self.pid
        if pid is not None:
            self.killed_pid = pid
            os.kill(pid, signal.SIGKILL)
        return pid

    def check(self, now: float) -> None:
        proc = self.proc
        if self.stopping or proc is None:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.start()
            return
        code = proc.poll()
        if code is None:
            return
        caused = self.killed_pid == proc.pid
        self.exits.append(Exit(self.name, now, proc.pid, code, caused))
        self.restart_at = now + RESTART_DELAY_S

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL past `timeout`); no restart after it."""
        self.stopping = True
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of `pid` so far; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used by each part, summed over every process that played it (restarts
    included): sampled each second, so a process killed between two samples loses at
    most its last second."""

    def __init__(self, others: Callable[[], dict[int, str]]) -> None:
        self._others = others
        self._last: dict[int, tuple[str, float]] = {}

    def sample(self, processes: list["Supervised"]) -> None:
        pids = {p.pid: p.role for p in processes if p.pid is not None}
        pids.update(self._others())
        for pid, role in pids.items():
            used = cpu_seconds(pid)
            if used is not None:
                self._last[pid] = (role, used)

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, used in self._last.values():
            totals[role] = totals.get(role, 0.0) + used
        return totals


class Supervisor:
    """Checks every process ten times a second from a thread of its own, and samples the
    CPU they use once a second."""

    def __init__(self, processes: list[Supervised], cpu: CpuMeter) -> None:
        self.processes = processes
        self.cpu = cpu
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-supervisor", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        for process in self.processes:
            process.start()
        self._thread.start()

    def _run(self) -> None:
        next_sample = 0.0
        while not self._stop.wait(0.1):
            with self._lock:
                now = time.time()
                for process in self.processes:
                    process.check(now)
                if now >= next_sample:
                    self.cpu.sample(self.processes)
                    next_sample = now + 1.0

    def stop(self) -> None:
        """Stop supervising, then every process (learners publish and hand over on SIGTERM)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            self.cpu.sample(self.processes)
            for process in self.processes:
                process.stop()

    @property
    def exits(self) -> list[Exit]:
        return sorted((e for p in self.processes for e in p.exits), key=lambda e: e.at)
