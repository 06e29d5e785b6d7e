"""The faults the soak benchmark injects, each timed: when it began, and when the part it
hit was back (the server answering again, the killed process replaced by a live one).
"""

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.soak_procs import Supervised
from bench.soak_watch import RedisWatch
from headrace.devstack import kafka_local, redis_local
from headrace.devstack.localproc import exited
from stream.settings import StreamSettings

SIGNALS = {"term": signal.SIGTERM, "kill": signal.SIGKILL}


@dataclass
class Fault:
    name: str
    at: float
    """When it began (unix time)."""
    stopped: float | None = None
    """When the server was down (restarts)."""
    back: float | None = None
    """When the part it hit was back; None if it never came back."""
    detail: str = ""

    @property
    def took_s(self) -> float | None:
        return None if self.back is None else self.back - self.at


def _stop(pid: int | None, sig: str, stop: Callable[[], object]) -> None:
    if pid is None:
        return
    if sig == "term":
        stop()  # SIGTERM and wait: a clean shutdown
        return
    os.kill(pid, signal.SIGKILL)
    while not exited(pid):
        time.sleep(0.01)


def restart_broker(settings: StreamSettings, cache_dir: Path, sig: str) -> Fault:
    pid = kafka_local.running_pid(settings)
    fault = Fault("broker restart", time.time(), detail=f"SIG{sig.upper()}, pid {pid}")
    _stop(pid, sig, lambda: kafka_local.stop(settings, timeout=60))
    fault.stopped = time.time()
    kafka_local.start(settings, cache_dir=cache_dir, timeout=180)
    fault.back = time.time()
    return fault


def restart_redis(settings: StreamSettings, sig: str) -> Fault:
    pid = redis_local.running_pid(settings)
    fault = Fault("Redis restart (AOF)", time.time(), detail=f"SIG{sig.upper()}, pid {pid}")
    _stop(pid, sig, lambda: redis_local.stop(settings, timeout=60))
    fault.stopped = time.time()
    redis_local.start(settings, timeout=120)
    fault.back = time.time()
    return fault


def kill_active_learner(watch: RedisWatch, learners: list[Supervised]) -> Fault:
    """kill -9 the lease holder; `back` is set later, from when the standby published."""
    holder = watch.holder_pid()
    victim = next((p for p in learners if p.pid == holder), None)
    fault = Fault("active learner kill -9", time.time())
    if victim is None:
        fault.detail = f"no learner of ours holds the lease (holder pid {holder})"
        return fault
    victim.kill()
    fault.detail = f"{victim.name}, pid {holder}"
    return fault


def kill_api_replica(replica: Supervised, port: int, timeout: float = 120.0) -> Fault:
    """kill -9 one API replica; back when its replacement's /ready answers 200."""
    killed = replica.kill()
    fault = Fault("API replica kill -9", time.time(), detail=f"{replica.name}, pid {killed}")
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=1.0) as client:
        while time.monotonic() < deadline:
            if replica.pid not in (None, killed):
                try:
                    if client.get("/ready").status_code == 200:
                        fault.back = time.time()
                        return fault
                except httpx.TransportError:
                    pass
            time.sleep(0.01)
    return fault
