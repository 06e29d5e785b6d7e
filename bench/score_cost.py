"""The CPU of a /predict's model part in one process: features (`features_many`) and the
logistic scorer (`score_columns`), as the API calls them, on bench/serve.py's model and bodies.

    .venv/bin/python bench/score_cost.py [--candidates 1,100,1000] [--rounds 3]
        [--compare CHECKOUT] [--port 0] [--data FILE]

A Redis of its own (on `--port`, or a free one) gets a model trained on the same simulator
stream as bench/serve.py's; the published model (as the API loads it), each body's user
aggregates and its candidates' item aggregates are read back and pickled, for each size K,
to `--data`.K.pickle (kept, and read back instead of training again by the next run with
the same `--data`), or to a temporary folder removed at the end.
Then a fresh process per checkout (this one, and `--compare`'s as `before`, in turn, for
`--rounds` rounds) imports that checkout's code, scores every body with it, and prints the
best per-request CPU (process time, best of 7 passes over the bodies) of:
`features_many`, `score_columns` on its columns, both, and `LinearScorer.from_model`.
The median round is reported, with the ratio against `before`. Both sides must give the
same scores to 1e-9, and equal to River's `predict_proba_one` of `features()` of each
candidate: the check line says so.
"""

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_PASSES = 7


def _store_args(found: dict[str, Any], half_life_s: float) -> tuple[Any, ...]:
    """The store-wide table as the features' last argument, for a checkout whose features
    read one (an older checkout's take none: its model has no weights for them)."""
    try:
        from learner.storestats import StoreStats
    except ImportError:
        return ()
    return (StoreStats.load(found.get("store_stats"), half_life_s),)


def work(root: Path, data: Path, out: Path) -> None:
    """Time `root`'s code on `data`'s bodies; scores to `out`, figures as JSON on stdout."""
    sys.path.insert(0, str(root))
    import msgspec
    import numpy as np

    from api.schemas import PredictRequest
    from learner.features import ItemColumns, features_many
    from learner.linear import LinearScorer

    with data.open("rb") as f:
        found: dict[str, Any] = pickle.load(f)  # a file this bench wrote
    model, config, at = found["model"], found["feature_config"], found["at"]
    store = _store_args(found, config.half_life_s)
    requests = [msgspec.json.decode(body, type=PredictRequest) for body in found["bodies"]]
    users: list[dict[str, float]] = found["users"]
    items = [ItemColumns.of(aggs) for aggs in found["items"]]
    work = list(zip(requests, users, items, strict=True))
    import learner.features

    # The checkout's own code, not the one this interpreter has installed.
    assert Path(learner.features.__file__).resolve().is_relative_to(root.resolve())
    scorer = LinearScorer.from_model(model)
    assert scorer is not None

    def features_only() -> list[Any]:
        return [
            features_many(r.context, r.candidates, u, i, at, config, *store) for r, u, i in work
        ]

    columns = features_only()
    sizes = [len(r.candidates) for r in requests]

    def scoring_only() -> list[Any]:
        return [scorer.score_columns(c, n) for c, n in zip(columns, sizes, strict=True)]

    def both() -> list[Any]:
        return [
            scorer.score_columns(
                features_many(r.context, r.candidates, u, i, at, config, *store), n
            )
            for (r, u, i), n in zip(work, sizes, strict=True)
        ]

    def from_model() -> list[Any]:
        return [LinearScorer.from_model(model) for _ in range(10)]

    def best(fn: Any, per: int) -> float:
        fn()  # warm: plans and caches as a serving process has them
        times = []
        for _ in range(_PASSES):
            began = time.process_time_ns()
            fn()
            times.append(time.process_time_ns() - began)
        return min(times) / per / 1000

    figures = {
        "features": best(features_only, len(work)),
        "scoring": best(scoring_only, len(work)),
        "both": best(both, len(work)),
        "from_model": best(from_model, 10),
    }
    np.save(out, np.concatenate(both()))
    print(json.dumps(figures))


def prepare(path: Path, sizes: list[int], port: int) -> None:
    """Train, publish and read back what `work` scores (bench/serve.py's model and bodies)."""
    sys.path.insert(0, str(ROOT))
    from datetime import UTC, datetime, timedelta

    import msgspec

    from api.loading import load_shard
    from api.schemas import PredictRequest
    from bench.serve_setup import bench_redis, bodies, ports_from, train
    from headrace.devstack import redis_local
    from headrace.sim.simulator import SimulatorConfig
    from learner.layout import ShardKeys
    from learner.redisconn import connect
    from learner.signing import Seal

    events = 40_000
    _, stream, signer = bench_redis(ports_from(port)())
    config = SimulatorConfig(
        seed=3,
        count=events,
        n_users=2_000,
        n_items=max(sizes) * 2,
        start=datetime.now(UTC) - timedelta(seconds=events / 12 + 300),
    )
    redis_local.start(stream)
    try:
        version = train(stream, config, signer)
        client = connect(stream)
        keys = ShardKeys(stream.key_prefix, "main")
        shard = load_shard(client, keys, None, lambda names: names, Seal.of(signer))
        assert shard is not None
        variant = shard.variants[shard.default_variant]
        loads: list[bytes] = []
        users: list[dict[str, float]] = []
        items: list[list[dict[str, float]]] = []
        for k in sizes:
            for body in bodies(config, k):
                request = msgspec.json.decode(body, type=PredictRequest)
                loads.append(body)
                users.append(_floats(client.hgetall(keys.user(request.user_id))))
                items.append(
                    [_floats(client.hgetall(keys.item(c.item_id))) for c in request.candidates]
                )
        client.close()
    finally:
        redis_local.stop(stream)
    found = {
        "model": variant.model,
        "feature_config": shard.feature_config,
        "store_stats": shard.store.dump() if shard.store is not None else None,
        "at": time.time(),
        "bodies": loads,
        "users": users,
        "items": items,
        "version": version,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(found, f, protocol=pickle.HIGHEST_PROTOCOL)


def _floats(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {key.decode(): float(value) for key, value in raw.items()}


def river_scores(data: Path) -> Any:
    """River's predict_proba_one of `features()` of every candidate, in `work`'s order."""
    sys.path.insert(0, str(ROOT))
    import msgspec
    import numpy as np

    from api.schemas import PredictRequest
    from learner.features import features
    from learner.variant import p_true_of

    with data.open("rb") as f:
        found: dict[str, Any] = pickle.load(f)  # a file this bench wrote
    model, config, at = found["model"], found["feature_config"], found["at"]
    store = _store_args(found, config.half_life_s)
    out = []
    for body, user, items in zip(found["bodies"], found["users"], found["items"], strict=True):
        request = msgspec.json.decode(body, type=PredictRequest)
        for c, aggs in zip(request.candidates, items, strict=True):
            row = features(request.context, c, user, aggs, at, config, *store)
            out.append(p_true_of(model.predict_proba_one(row)))
    return np.array(out, dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", default="100")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None, metavar="CHECKOUT")
    parser.add_argument("--port", type=int, default=0, help="the bench Redis's port")
    parser.add_argument("--data", type=Path, default=None, metavar="FILE")
    parser.add_argument("--work", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work is not None:
        work(*args.work)
        return
    sizes = [int(k) for k in args.candidates.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="headrace-score-cost-"))
    try:
        results = compare(sizes, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, sizes)


def compare(
    sizes: list[int], args: argparse.Namespace, tmp: Path
) -> dict[str, dict[int, list[dict[str, float]]]]:
    """Each side's figures of each round, by size; exits when the sides score otherwise."""
    import numpy as np

    results: dict[str, dict[int, list[dict[str, float]]]] = {}
    scores: dict[str, Any] = {}
    for k in sizes:
        data = args.data.with_suffix(f".{k}.pickle") if args.data else tmp / f"{k}.pickle"
        if not data.exists():
            began = time.perf_counter()
            prepare(data, [k], args.port)
            took = time.perf_counter() - began
            print(f"{k} candidates: model trained and read back in {took:.0f} s")
        expected = river_scores(data)
        sides = {"this": ROOT, **({"before": args.compare.resolve()} if args.compare else {})}
        for _ in range(args.rounds):
            for name, root in sides.items():
                out = tmp / f"{name}-{k}.npy"
                argv = [sys.executable, str(Path(__file__).resolve()), "--work"]
                done = subprocess.run(
                    [*argv, str(root), str(data), str(out)],
                    cwd=root,
                    check=True,
                    capture_output=True,
                    text=True,
                )
                results.setdefault(name, {}).setdefault(k, []).append(json.loads(done.stdout))
                scores[name] = np.load(out)
        gaps = {name: float(np.max(np.abs(got - expected))) for name, got in scores.items()}
        print(
            f"check, {k} candidates: {len(expected):,} scores of each side against River's "
            f"predict_proba_one: max gap "
            + ", ".join(f"{name} {gap:.1e}" for name, gap in gaps.items())
        )
        if max(gaps.values()) > 1e-9:
            raise SystemExit("the sides do not score alike")
    return results


def report(results: dict[str, dict[int, list[dict[str, float]]]], sizes: list[int]) -> None:
    parts = ["features", "scoring", "both", "from_model"]
    print(
        "\nCPU per request in us (process time, best of 7 passes, median of the rounds); "
        "from_model per model version"
    )
    print("| candidates | code | " + " | ".join(parts) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in parts) + " |")
    for k in sizes:
        medians: dict[str, dict[str, float]] = {}
        for name, by_size in results.items():
            runs = by_size[k]
            medians[name] = {p: sorted(r[p] for r in runs)[len(runs) // 2] for p in parts}
        for name, got in medians.items():
            cells = []
            for p in parts:
                cell = f"{got[p]:,.1f}"
                if name != "before" and "before" in medians:
                    cell += f" ({got[p] / medians['before'][p]:.2f}x)"
                cells.append(cell)
            print(f"| {k} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
