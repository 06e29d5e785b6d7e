"""Where an API process's CPU goes, from py-spy's collapsed stacks, by part of a request.

    .venv/bin/python bench/serve.py --candidates 100 --profile prof.txt
    .venv/bin/python bench/profile_groups.py prof.txt [--us-per-request 660]

Each sample counts once, for the innermost frame that belongs to a part (so time in
`features_many` is not also counted in the predictor that called it). With
--us-per-request (1e6 / the run's req/cpu-s) each share is also given in microseconds.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aggregates from Redis (pack, round trip, parse)", ("OnlineAggregates.", "_Replies.")),
    ("aggregates from the item cache", ("ItemCache.",)),
    ("features (features_many)", ("features_many",)),
    ("scoring (score_columns)", ("score_columns", "LinearScorer.")),
    ("answers from the response cache", ("ResponseCache.",)),
    ("ranking, encoding, metrics (rest of predict)", ("Predictor.predict", "Metrics.")),
    ("body read and decode", ("read_body", "receive_body", "RequestDecoder.decode")),
    ("writing the response (socket)", ("RequestResponseCycle.send",)),
    ("model holder (background thread)", ("ModelHolder.", "Thread.run")),
    (
        "HTTP parsing, routing, middleware",
        (
            "FastAPI.__call__",
            "HeadraceApp.__call__",
            "FastPredict.",
            "_respond",
            "answer",
            "RequestResponseCycle.run_asgi",
            "HttpToolsProtocol.",
            "ProxyHeadersMiddleware.",
        ),
    ),
)
FRAME = re.compile(r"(.*?) \((.*?)(?::\d+)?\)$")


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        match = FRAME.match(frame)
        name = match.group(1) if match else frame
        for part, prefixes in PARTS:
            if name.startswith(prefixes):
                return part
    return "event loop and the rest"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--us-per-request", type=float, default=0.0)
    args = parser.parse_args()
    shares: Counter[str] = Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        shares[part_of(stack.split(";"))] += int(count)
    total = sum(shares.values())
    print(f"{total:,} samples")
    for part, n in shares.most_common():
        us = f"  ~{n / total * args.us_per_request:4.0f} us" if args.us_per_request else ""
        print(f"{n / total:6.1%}{us}  {part}")


if __name__ == "__main__":
    main()
