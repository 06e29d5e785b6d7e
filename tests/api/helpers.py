"""The API's tests: simulator streams that end about now, request bodies, scores computed
directly, and a real API process.

Models are trained by the real learner loop: in process (tests.learner.harness
`InProcessLearner`, without Kafka) or through Kafka (`build_worker`, `headrace learn`).
"""

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import redis

from headrace.sim.simulator import SimulatorConfig
from headrace.sim.store_world import ShopRequest
from learner.aggregates import decode_hash
from learner.features import FeatureConfig, features
from learner.layout import ShardKeys, read_meta
from learner.storestats import StoreStats
from stream.settings import StreamSettings
from tests.learner.harness import learner_env
from tests.support import free_port, verifier_env

ROOT = Path(__file__).resolve().parents[2]

JOIN_WINDOW_S = 300.0
"""Attribution window of the tests' learners. The simulator's purchases come 10 s to a few
minutes after the impression; the default half hour would leave the last half hour of
every short test stream pending, and its metrics unscored."""


def recent_config(**overrides: Any) -> SimulatorConfig:
    """A simulator stream whose event time ends about now.

    The API computes features at wall-clock now, and the aggregates decay with a one-day
    half-life: a stream from the simulator's default start (January 2026) would reach
    the API with every count decayed to nothing. A stream that ends shortly before now
    is what a live deployment sees.
    """
    params: dict[str, Any] = {"seed": 21, "count": 12_000, "n_users": 300, "n_items": 150}
    params.update(overrides)
    # About 12 records a session and one session a second (event time).
    span_s = params["count"] / 12 * 1.0
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=span_s + 600)
    return SimulatorConfig(start=start, **params)


def request_body(request: ShopRequest, **extra: Any) -> dict[str, Any]:
    """A storefront's /predict body for a simulator request."""
    ctx = request.context
    return {
        "user_id": request.user_id,
        "context": {
            "query": ctx.query,
            "device": ctx.device,
            "page": ctx.page,
            "position": ctx.position,
        },
        "candidates": [
            {
                "item_id": c.item_id,
                "price": c.item.price,
                "category": c.item.category,
                **({"brand": c.item.brand} if c.item.brand is not None else {}),
            }
            for c in request.candidates
        ],
        **extra,
    }


def direct_scores(
    client: redis.Redis,
    keys: ShardKeys,
    model: Any,
    request: ShopRequest,
    at: float,
    config: FeatureConfig,
    store_stats: Any = None,
) -> list[float]:
    """River's own predict_proba_one on the learner's features from the same aggregates
    and the store-wide table of the published state (or `store_stats`, that table as a
    state's meta holds it: a version's own, when a newer one may have been published)."""
    user = decode_hash(client.hgetall(keys.user(request.user_id)))
    if store_stats is None:
        store_stats = (read_meta(client, keys) or {}).get("store_stats")
    store = StoreStats.load(store_stats, config.half_life_s)
    out = []
    for c in request.candidates:
        item = decode_hash(client.hgetall(keys.item(c.item_id)))
        x = features(request.context, c.item, user, item, at, config, store)
        out.append(float(model.predict_proba_one(x).get(True, 0.0)))
    return out


def roc_auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Mann-Whitney AUC with ties counted as halves."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    ranks: npt.NDArray[np.float64] = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.arange(1, len(s) + 1)
    # Average the ranks of tied scores.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = sums[inverse] / counts[inverse]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def metric(url: str, line_start: str) -> float:
    """The value of the sample of the API at `url` whose /metrics line starts so."""
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no {line_start} in /metrics")


def api_env(settings: StreamSettings, **overrides: object) -> dict[str, str]:
    """The environment of a `headrace serve` subprocess: the learner's without its signing
    key (the public key instead), plus `overrides`."""
    return verifier_env(learner_env(settings, **overrides))


class ApiProcess:
    """`headrace serve` as a real uvicorn subprocess on a free 127.0.0.1 port."""

    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        argv = [sys.executable, "-m", "headrace.cli", "serve", "--port", str(self.port)]
        argv += ["--host", "127.0.0.1", "--workers", str(workers)]
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_listening(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("the API did not start listening")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
