"""The naive /predict bench/serve.py compares headrace's API with: the fairest one.

What a FastAPI app looks like when written the obvious way, with the obvious fast
choices: an async endpoint (a sync one runs in FastAPI's threadpool, which cost it a
fifth of its throughput), pydantic models as the body parameter (FastAPI's own parsing
and validation), the aggregates in one pipeline of redis-py's asyncio client (hiredis
parses the replies), the learner's own `features()` per candidate, River's
`predict_proba_one` per candidate, a dict returned for FastAPI's default encoder. Same
model (the published "main" variant, loaded once at start), same features, same Redis
look-ups, same response fields: bench/serve.py checks both rank and score alike.

    uvicorn bench.serve_naive:create --factory  (settings from HEADRACE_* variables)
"""

import time
import uuid
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis
from fastapi import FastAPI
from pydantic import BaseModel

from learner import modelcodec
from learner.aggregates import decode_hash
from learner.features import FeatureConfig, features
from learner.layout import ShardKeys
from learner.redisconn import connect
from learner.storestats import StoreStats
from learner.variant import p_true_of
from stream.settings import StreamSettings


class NaiveContext(BaseModel):
    query: str = ""
    device: str = "desktop"
    page: str = "search"
    position: int = 0


class NaiveCandidate(BaseModel):
    item_id: str
    price: float
    category: str
    brand: str | None = None


class NaiveRequest(BaseModel):
    user_id: str
    context: NaiveContext = NaiveContext()
    candidates: list[NaiveCandidate]
    top_k: int | None = None


def create() -> FastAPI:
    stream = StreamSettings()
    # The model is read once, at start, with the blocking client; requests use asyncio.
    client: redis.Redis = connect(stream)
    keys = ShardKeys(stream.key_prefix, "main")
    state = client.hmget(keys.state, ["version", "meta", "model:main"])
    client.close()
    version, meta, model = int(state[0]), orjson.loads(state[1]), modelcodec.loads(state[2])
    config = FeatureConfig(**meta["feature_config"])
    store = StoreStats.load(meta.get("store_stats"), config.half_life_s)
    password = stream.redis_password_value
    extra: dict[str, Any] = {"password": password} if password is not None else {}
    requests: aioredis.Redis = aioredis.Redis.from_url(stream.redis_url, **extra)
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/predict")
    async def predict(request: NaiveRequest) -> dict[str, Any]:
        async with requests.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.user(request.user_id))
            for candidate in request.candidates:
                pipe.hgetall(keys.item(candidate.item_id))
            raw = await pipe.execute()
        user = decode_hash(raw[0])
        at = time.time()
        scores = []
        for candidate, item in zip(request.candidates, raw[1:], strict=True):
            x = features(request.context, candidate, user, decode_hash(item), at, config, store)
            scores.append(p_true_of(model.predict_proba_one(x)))
        request_id = uuid.uuid4().hex
        order = range(len(scores))
        if request.top_k is not None:
            order = sorted(order, key=lambda i: -scores[i])[: request.top_k]  # type: ignore[assignment]
        return {
            "request_id": request_id,
            "model": "main",
            "variant": "main",
            "version": version,
            "scores": [
                {
                    "item_id": request.candidates[i].item_id,
                    "score": scores[i],
                    "impression_id": f"{request_id}-{i}",
                }
                for i in order
            ],
        }

    return app
