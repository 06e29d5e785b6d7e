"""What signing the state in Redis costs: publish and load, with their signatures.

Trains the learner's core (a logistic and a tree variant, no Kafka) on a simulator stream,
starts a Redis of its own, then times, median of many runs:

- the learner's publish of the state hash (StateStore.publish: sign, then MULTI/EXEC);
- the learner's load of it (StateStore.load: read, verify, every field checked);
- the API's load of a new version (api.loading.load_shard: read, verify, unpickle models);
- the API's load of a new version whose model blobs did not change (no unpickling: what
  the signature check costs a replica on its own);
- sealing and verifying alone.

Written to run on the code before signing existed too (it then skips what is missing), so
one command on each checkout gives the before and after:

    .venv/bin/python bench/signing.py
"""

import argparse
import inspect
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from pydantic import SecretStr

from api.loading import load_shard
from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig, generate
from learner.aggregates import AggregateCache
from learner.layout import ShardKeys
from learner.lease import Lease
from learner.loop import Learner
from learner.settings import LearnerSettings
from learner.state import StateStore
from stream.events import Rejection, parse_event
from stream.settings import StreamSettings
from tests.support import free_port

try:
    from learner import signing
    from snapshots.keys import SigningKey
except ImportError:  # the code before signing
    signing = None  # type: ignore[assignment]


def median_us(action: Callable[[], Any], repeat: int) -> float:
    action()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    password = secrets.token_urlsafe(32)
    tmp = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    stream = StreamSettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        stack_dir=str(tmp),
        key_prefix="bench",
        redis_password=SecretStr(password),  # ignored by the code before (no such setting)
    )
    redis_local.start(stream)
    try:
        signed = signing is not None
        client = redis.Redis.from_url(stream.redis_url, password=password if signed else None)
        run(client, args, signed)
        client.close()
    finally:
        redis_local.stop(stream)


def run(client: redis.Redis, args: argparse.Namespace, signed: bool) -> None:
    keys = ShardKeys("bench", "main")
    variants = {"main": "logreg", "tree": "tree"}
    learner = Learner(
        LearnerSettings(join_window_s=300.0, variants=variants), keys, AggregateCache(client)
    )
    learner.topology = {"partitions": [0], "n_partitions": 1}
    config = SimulatorConfig(seed=3, count=args.events, n_users=2_000, n_items=500)
    for offset, record in enumerate(generate(config)):
        event = parse_event(record.value)
        if isinstance(event, Rejection):
            continue
        learner.prefetch([event])
        learner.process(event, 0, offset)

    extra: dict[str, Any] = {}
    reader: dict[str, Any] = {}
    if signed:
        key = SigningKey.generate()
        extra = {"seal": signing.Seal.of(key)}
        reader = {"seal": signing.Seal((key.public,))}
    store = StateStore(client, keys, 60_000, **extra)
    lease = Lease(client, keys, 60_000)
    assert lease.try_acquire() and lease.token is not None
    token = lease.token
    delta = learner.delta()
    # The state hash alone: what signing touches (joins, ids and aggregates are unchanged).
    delta.pending_upserts, delta.pending_deletes = {}, []
    delta.seen_chunk, delta.aggregates, delta.alerts, delta.history = None, {}, [], None
    store.publish(token, delta)
    sizes = {name: len(blob) for name, blob in delta.models.items()}
    print(f"{'signed' if signed else 'unsigned'} state, {args.events:,} events learned")
    print(f"  core {len(delta.core):,} bytes, models {sizes}")

    wanted = ["main", "tree"]
    takes_seal = "seal" in inspect.signature(load_shard).parameters

    loader: Any = load_shard  # its signature differs before signing

    def api_load(previous: Any = None) -> Any:
        if takes_seal:
            return loader(client, keys, previous, lambda n: wanted, reader["seal"])
        return loader(client, keys, previous, lambda n: wanted)

    figures = {
        "publish (StateStore.publish)": median_us(lambda: store.publish(token, delta), args.repeat),
        "learner load (StateStore.load)": median_us(store.load, args.repeat),
        "API load, new models": median_us(api_load, max(20, args.repeat // 10)),
    }
    loaded = api_load()

    def unchanged() -> Any:
        # A newer version with the same blobs: the replica reuses its models.
        stale = loaded.__class__(**{**_fields(loaded), "version": 0})
        return api_load(stale)

    figures["API load, models unchanged"] = median_us(unchanged, args.repeat)
    if signed:
        raw = client.hgetall(keys.state)
        fields = {k.decode(): v for k, v in raw.items() if k != b"sig"}
        version = int(fields["version"])
        sealer = extra["seal"]
        figures["seal alone (hash fields + sign)"] = median_us(
            lambda: sealer.seal(keys, version, fields), args.repeat
        )
        figures["verify alone (record + signature)"] = median_us(
            lambda: sealer.verify(raw, keys), args.repeat
        )

        def verify_all() -> None:
            state = sealer.verify(raw, keys)
            for name in state.digests:
                state.field(name)

        figures["verify and check every field"] = median_us(verify_all, args.repeat)
    for name, us in figures.items():
        print(f"  {name:<40} {us:>10,.0f} us")
    lease.release()


def _fields(loaded: Any) -> dict[str, Any]:
    return {name: getattr(loaded, name) for name in loaded.__dataclass_fields__}


if __name__ == "__main__":
    main()
