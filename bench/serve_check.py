"""Proof that two /predict servers did the same work: the same items, scores and order.

Each body is sent once to each server with `top_k` set to its candidate count (so each
answer is a full ranking, best first); the answers must list the same item ids with each
item's scores within `tolerance`, in the same order except where two items' scores are
within `tolerance` of each other (the two answers are computed a few ms apart, and the
time decay of the aggregates moves a score by about 1e-9 in that time: at 1,000
candidates two items that close may change places).
"""

import httpx
import orjson


def same_answers(urls: list[str], bodies: list[bytes], tolerance: float = 1e-6) -> float:
    """The largest score difference seen; raises SystemExit when the servers disagree."""
    worst = 0.0
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        for n, plain in enumerate(bodies):
            request = orjson.loads(plain)
            body = orjson.dumps({**request, "top_k": len(request["candidates"])})
            answers = []
            for url in urls:
                response = client.post(f"{url}/predict", content=body, headers=headers)
                response.raise_for_status()
                answers.append(orjson.loads(response.content)["scores"])
            first = answers[0]
            for url, other in zip(urls[1:], answers[1:], strict=True):
                ids = [s["item_id"] for s in first]
                if sorted(ids) != sorted(s["item_id"] for s in other):
                    raise SystemExit(f"body {n}: {urls[0]} and {url} return different items")
                # Each item's own score, and the score at each rank: two items whose scores
                # are within `tolerance` may change places, nothing else may.
                mine = {s["item_id"]: s["score"] for s in first}
                gap = max(abs(mine[b["item_id"]] - b["score"]) for b in other)
                ranked = max(
                    abs(a["score"] - b["score"]) for a, b in zip(first, other, strict=True)
                )
                if max(gap, ranked) > tolerance:
                    raise SystemExit(
                        f"body {n}: {urls[0]} and {url} differ by {max(gap, ranked):.3g}"
                    )
                worst = max(worst, gap, ranked)
    return worst
