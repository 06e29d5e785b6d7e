"""What the API asks Redis: per /predict, and per second while idle (the model holder's poll).

    .venv/bin/python bench/ready_cost.py [--requests 2000] [--idle 10]

Starts its own Redis (a free 127.0.0.1 port, a temporary folder), trains and publishes the
learner's logistic model there, runs `headrace serve` (one worker), then counts Redis's
commands (INFO commandstats) over an idle window and over sequential /predict requests:
the readiness check on the shard's state rides on the holder's poll, so a request costs
the same commands whether it is there or not. Then deletes the state, and checks /ready.
"""

import argparse
import secrets
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import redis
from pydantic import SecretStr

from bench.serve_setup import api_env, bodies, free_port, start, train
from headrace.devstack import redis_local
from headrace.sim.simulator import SimulatorConfig
from learner.redisconn import connect
from snapshots.keys import SigningKey
from stream.settings import StreamSettings


def commands(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of the idle window")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    stream = StreamSettings(
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        redis_password=SecretStr(secrets.token_urlsafe(32)),
        stack_dir=str(tmp),
        key_prefix="bench",
    )
    signer = SigningKey.generate()
    config = SimulatorConfig(
        seed=3, count=10_000, n_users=500, n_items=200,
        start=datetime.now(UTC) - timedelta(seconds=10_000 / 12 + 300),
    )  # fmt: skip
    redis_local.start(stream)
    proc = None
    try:
        train(stream, config, signer)
        env = api_env(stream, signer)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start(
            [sys.executable, "-m", "headrace.cli", "serve", "--port", str(port)],
            env,
            tmp / "api.log",
            port,
        )
        client: redis.Redis = connect(stream)
        load = bodies(config, 20)
        with httpx.Client(base_url=url, timeout=5.0) as http:
            for body in load:  # warm-up
                http.post("/predict", content=body, headers={"content-type": "application/json"})
            before, began = commands(client), time.monotonic()
            time.sleep(args.idle)
            idle = delta(before, commands(client))
            idle_s = time.monotonic() - began
            idle.pop("info", None)
            print(f"idle {idle_s:.1f} s: {idle} = {sum(idle.values()) / idle_s:.2f} commands/s")
            before, began = commands(client), time.monotonic()
            for i in range(args.requests):
                http.post(
                    "/predict",
                    content=load[i % len(load)],
                    headers={"content-type": "application/json"},
                )
            busy = delta(before, commands(client))
            busy_s = time.monotonic() - began
            busy.pop("info", None)
            polls = sum(idle.values()) / idle_s * busy_s
            print(
                f"{args.requests} /predict in {busy_s:.1f} s: {busy}; "
                f"{(sum(busy.values()) - polls) / args.requests:.2f} commands per request "
                f"after the poll's {polls:.0f}"
            )
            keys = list(client.scan_iter(match=f"{stream.key_prefix}:*"))
            client.delete(*keys)
            began = time.monotonic()
            while (ready := http.get("/ready")).status_code == 200:
                time.sleep(0.01)
            print(
                f"state deleted: /ready {ready.status_code} after "
                f"{time.monotonic() - began:.2f} s: {ready.json()}"
            )
        client.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        redis_local.stop(stream)


if __name__ == "__main__":
    main()
