"""What every serving bench sets up: a Redis of its own with a model trained and published
in it (the learner's core over a simulator stream, no Kafka), the API processes' settings
and start, and the /predict bodies they are loaded with."""

import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import orjson
import redis
from pydantic import SecretStr

from headrace.sim.simulator import SimulatorConfig, generate, world
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.lease import Lease
from learner.loop import Learner
from learner.redisconn import connect
from learner.settings import LearnerSettings
from learner.signing import Seal
from learner.state import StateStore
from snapshots.keys import SigningKey
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings

ROOT = Path(__file__).resolve().parent.parent


def train(
    stream: StreamSettings,
    config: SimulatorConfig,
    signer: SigningKey,
    variants: dict[str, str] | None = None,
) -> int:
    """The learner's core over `config`'s stream, published once (no Kafka needed)."""
    client: redis.Redis = connect(stream)
    keys = ShardKeys(stream.key_prefix, "main")
    settings = LearnerSettings(join_window_s=300.0, variants=variants or {"main": "logreg"})
    learner = Learner(settings, keys, AggregateCache(client))
    learner.topology = {"partitions": [0], "n_partitions": 1}
    for offset, record in enumerate(generate(config)):
        event = parse_event(record.value)
        if isinstance(event, Rejection):
            continue
        learner.prefetch([event])
        learner.process(event, 0, offset)
    lease = Lease(client, keys, 60_000)
    assert lease.try_acquire() and lease.token is not None
    store = StateStore(client, keys, 60_000, Seal.of(signer))
    version = store.publish(lease.token, learner.delta()).version
    lease.release()
    client.close()
    return version


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ports_from(base: int, count: int = 5) -> Callable[[], int]:
    """The next port: `base`, `base + 1`, ... (up to `count`), or a free one when base is 0."""
    fixed = iter(range(base, base + count)) if base else None
    return lambda: next(fixed) if fixed is not None else free_port()


def bench_redis(redis_port: int) -> tuple[Path, StreamSettings, SigningKey]:
    """A temporary folder, the settings of a password-protected Redis of the bench's own on
    `redis_port` (not started yet) and the signing key its models are sealed with."""
    tmp = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    stream = StreamSettings(
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_password=SecretStr(secrets.token_urlsafe(32)),
        stack_dir=str(tmp),
        key_prefix="bench",
    )
    return tmp, stream, SigningKey.generate()


def api_env(stream: StreamSettings, signer: SigningKey, **settings: object) -> dict[str, str]:
    """The environment of a `headrace serve` of the bench's Redis and model; `settings`
    are further HEADRACE_ settings (max_candidates=100: HEADRACE_MAX_CANDIDATES)."""
    return {
        "PATH": "/usr/bin:/bin",
        "HEADRACE_REDIS_URL": stream.redis_url,
        "HEADRACE_REDIS_PASSWORD": stream.redis_password_value or "",
        "HEADRACE_VERIFY_KEY": signer.public.text,
        "HEADRACE_KEY_PREFIX": stream.key_prefix,
        **{f"HEADRACE_{name.upper()}": str(value) for name, value in settings.items()},
    }


def start(
    argv: list[str], env: dict[str, str], log: Path, port: int, cwd: Path = ROOT
) -> subprocess.Popen[bytes]:
    import httpx

    out = log.open("ab")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            # The real API is usable once its model is in memory (the naive one has no /ready).
            ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code
            if ready in (200, 404):
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{argv[2:4]} did not become ready; see {log}")


def bodies(config: SimulatorConfig, k: int, n: int = 50) -> list[bytes]:
    store = world(config)
    rng = np.random.default_rng(k)
    out = []
    for user in range(n):
        request = store.request_for(user, rng, k=k)
        out.append(
            orjson.dumps(
                {
                    "user_id": request.user_id,
                    "context": {
                        "query": request.context.query,
                        "device": request.context.device,
                        "page": request.context.page,
                        "position": 0,
                    },
                    "candidates": [
                        {
                            "item_id": c.item_id,
                            "price": c.item.price,
                            "category": c.item.category,
                            "brand": c.item.brand,
                        }
                        for c in request.candidates
                    ],
                }
            )
        )
    return out
