"""GET /models: every shard's variants as this replica serves them (no Redis call)."""

from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from api.deps import Services, ServicesDep
from api.loading import ShardModel
from api.routes import json_response
from api.scoring import scorer_name
from learner.counters import QUARANTINED, by_prefix

router = APIRouter(tags=["operations"])


@router.get(
    "/models",
    summary=(
        "Every shard's variants: epoch and version, n learned, offsets, metrics, reliability, "
        "lineage, age, lag"
    ),
    response_class=Response,
    responses={
        200: {
            "description": "One entry per shard of HEADRACE_SHARDS",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def list_models(services: ServicesDep) -> Response:
    served = services.holder.served
    now = services.clock()
    entries = [
        _shard(services, served.shards[name], now)
        if name in served.shards
        else {"model": name, "status": "no model loaded yet"}
        for name in services.holder.shard_names
    ]
    return json_response({"models": entries})


def _shard(services: Services, shard: ShardModel, now: float) -> dict[str, Any]:
    meta = shard.meta
    split = services.predictor.split
    shadow = services.settings.shadow_variant
    variants = []
    for name, facts in meta.get("variants", {}).items():
        loaded = shard.variants.get(name)
        share = split.share_of(name) if split.names else float(name == shard.default_variant)
        variants.append(
            {
                "name": name,
                "kind": facts.get("kind"),
                "n_learned": facts.get("n_learned"),
                "metrics": facts.get("metrics", {}),
                "reliability": facts.get("reliability", []),
                "loaded": loaded is not None,
                "scorer": None if loaded is None else scorer_name(loaded),
                "traffic_share": share,
                "shadow": name == shadow,
                "default": name == shard.default_variant,
            }
        )
    return {
        "model": shard.shard,
        "status": "loaded",
        "epoch": shard.epoch,
        "version": shard.version,
        "published_at": shard.published_at,
        "age_s": max(0.0, now - shard.published_at),
        "loaded_at": shard.loaded_at,
        "offsets": meta.get("offsets", {}),
        "partitions": meta.get("partitions"),
        "lineage": meta.get("lineage", {}),
        "lag": meta.get("lag", {}),
        "quarantined": by_prefix(meta.get("counts", {}), QUARANTINED),
        "variants": variants,
    }
