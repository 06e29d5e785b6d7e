"""The answer encoded by msgspec from the response types is the bytes orjson wrote over a
dict per candidate, for every probability and item id the API can answer."""

import math
import random

import msgspec
import orjson

from api.schemas import PredictResponse, Score

ODD_IDS = [
    "i00017",
    "caf\u00e9",
    'a"b',
    "\u2603 snowman",
    "\x01\x1f\x7f",
    "back\\slash",
    "tab\t nl\n cr\r",
    "/</script>",
    "\u2028\u2029",
    "\U0001f600",
    "x\x08\x0c",
]


def test_the_answer_is_the_bytes_orjson_wrote() -> None:
    rng = random.Random(16)
    scores = [0.0, 1.0, 5e-324, 2.2250738585072014e-308, 1e-7, 1.2e-7, 3e-5, 0.1, 1 / 3]
    scores += [rng.random() * 10 ** -rng.randrange(0, 320) for _ in range(3000)]
    scores += [math.ldexp(rng.random(), -rng.randrange(0, 1075)) for _ in range(3000)]
    scores += [1 - rng.random() * 1e-12 for _ in range(300)]
    ids = [ODD_IDS[i % len(ODD_IDS)] + str(i) for i in range(len(scores))]
    impressions = [f"6f1c0e2a9b4d4c7e8a3f5b1d2c9e0a7b-{i}" for i in range(len(scores))]
    for degraded in (False, True):
        rows = list(map(Score, ids, scores, impressions))
        ours = msgspec.json.encode(
            PredictResponse("6f1c", "main", "main", 1796440210712, 1842, degraded, rows)
        )
        theirs = orjson.dumps(
            {
                "request_id": "6f1c",
                "model": "main",
                "variant": "main",
                "epoch": 1796440210712,
                "version": 1842,
                "degraded": degraded,
                "scores": [
                    {"item_id": i, "score": s, "impression_id": m}
                    for i, s, m in zip(ids, scores, impressions, strict=True)
                ],
            }
        )
        assert ours == theirs
