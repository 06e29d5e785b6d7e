"""Proof that two /predict servers did the same work: the same items, scores and order.

Each body is sent once to each server with `top_k` set to its candidate count (so each
answer is a full ranking, best first); the answers must list the same item ids in the
same order with scores within `tolerance` (the two answers are computed a few ms apart,
and the time decay of the aggregates moves a score by about 1e-9 in that time).
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
                if ids != [s["item_id"] for s in other]:
                    raise SystemExit(f"body {n}: {urls[0]} and {url} return different items")
                gap = max(abs(a["score"] - b["score"]) for a, b in zip(first, other, strict=True))
                if gap > tolerance:
                    raise SystemExit(f"body {n}: {urls[0]} and {url} differ by {gap:.3g}")
                worst = max(worst, gap)
    return worst
