"""The FastAPI app: `create_app(settings)` wires the parts; the lifespan starts and stops them.

The composition root of the API process. Nothing is built at import time: uvicorn calls
`app_from_env` (a factory) in each worker, tests call `create_app` with their settings.
"""

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from redis.backoff import NoBackoff
from redis.retry import Retry

from api import errors
from api.alertfeed import AlertFeed
from api.cascadespec import check_shards, variants_wanted
from api.collector import young_threshold
from api.deps import Services, key_digest
from api.fastpath import FastPredict, HeadraceApp
from api.holder import ModelHolder
from api.impressions import ImpressionPublisher
from api.itemcache import ItemCache
from api.online import OnlineAggregates, RedisHealth
from api.predictor import Predictor, Shadow
from api.resp import RespPipeline
from api.respcache import ResponseCache
from api.routes import admin, dashboard, drift, export, health, models, predict
from api.schemas import RequestDecoder, openapi_components
from api.settings import ApiSettings
from api.telemetry import LatencyMiddleware, Metrics
from api.traffic import TrafficSplit, shard_names
from learner.layout import alerts_key
from learner.recovery import Snapshots
from learner.redisconn import connect
from learner.signing import Seal
from snapshots.keys import VerifyKey
from snapshots.location import open_store
from snapshots.settings import SigningSettings, SnapshotSettings
from stream.producer import make_producer
from stream.settings import StreamSettings

DESCRIPTION = """Scores candidate items for a user with the models the learner publishes.

Every response names the model shard, variant and state version that computed it.
See docs/api.md for the traffic split, settings and operations."""


def create_app(
    settings: ApiSettings,
    stream: StreamSettings | None = None,
    *,
    verify_keys: tuple[VerifyKey, ...] | None = None,
    snapshots: SnapshotSettings | None = None,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The API over the Redis and Kafka of `stream` (default: from the environment).

    `verify_keys` are the learner's public keys (default: HEADRACE_VERIFY_KEY and the
    previous ones): the app verifies state and snapshots with them and never holds a
    signing key, so it can neither forge state nor take or restore a snapshot itself."""
    stream = stream if stream is not None else StreamSettings()
    check_shards(settings.cascade, shard_names(stream.shards))
    metrics = Metrics()
    decoder = RequestDecoder(settings.max_candidates)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = verify_keys if verify_keys is not None else _verify_keys()
        snapshot_settings = snapshots if snapshots is not None else SnapshotSettings()
        services, closers = _build(
            settings, stream, keys, snapshot_settings, metrics, decoder, clock
        )
        app.state.services = services
        restore = young_threshold(settings.gc_young_threshold)
        try:
            yield
        finally:
            restore()
            await services.alerts.close()
            for close in closers:
                close()

    app = HeadraceApp(
        title="headrace",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    errors.install(app)
    app.fast_predict = FastPredict(metrics)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.include_router(predict.router)
    app.include_router(models.router)
    app.include_router(export.router)
    app.include_router(health.router)
    app.include_router(admin.router)
    app.include_router(drift.router)
    app.include_router(dashboard.router)
    app.mount(
        "/dashboard/static",
        StaticFiles(packages=[dashboard.STATIC_PACKAGE]),
        name="dashboard-static",
    )
    app.openapi = partial(_openapi, app, decoder)  # type: ignore[method-assign]
    return app


def app_from_env() -> FastAPI:
    """uvicorn's factory (`headrace serve`): settings from HEADRACE_* variables."""
    return create_app(ApiSettings(), StreamSettings())


def _verify_keys() -> tuple[VerifyKey, ...]:
    """HEADRACE_VERIFY_KEY and the previous keys. A signing key in the environment is
    refused, as `headrace serve` refuses it: were the API able to sign, taking it over
    would forge state and snapshots too."""
    signing = SigningSettings()
    if signing.has_signer:
        raise ValueError(
            "the API must not hold the learner's signing key: unset HEADRACE_SIGNING_KEY and "
            "HEADRACE_SIGNING_KEY_FILE; it verifies with HEADRACE_VERIFY_KEY"
        )
    return signing.verify_keys()


def _build(
    settings: ApiSettings,
    stream: StreamSettings,
    verify_keys: tuple[VerifyKey, ...],
    snapshot_settings: SnapshotSettings,
    metrics: Metrics,
    decoder: RequestDecoder,
    clock: Callable[[], float],
) -> tuple[Services, list[Callable[[], None]]]:
    requests_pipeline = RespPipeline(
        stream.redis_url,
        settings.redis_timeout_s,
        password=stream.redis_password_value,
        sentinels=stream.sentinel_addresses,
        service=stream.redis_sentinel_service,
    )
    state_client: redis.Redis = connect(
        stream,
        socket_timeout=settings.model_load_timeout_s,
        socket_connect_timeout=min(settings.model_load_timeout_s, 2.0),
        # No retries: the holder polls again anyway, and must notice an outage at once.
        retry=Retry(NoBackoff(), 0),
    )
    health = RedisHealth()
    split = TrafficSplit(settings.traffic)
    shadow = settings.shadow_variant

    cascades = settings.cascade

    def wanted(names: list[str]) -> list[str]:
        return [*split.names, *([shadow] if shadow else []), *variants_wanted(cascades)]

    holder = ModelHolder(
        state_client,
        stream.key_prefix,
        stream.shards,
        wanted,
        Seal(verify_keys),
        metrics,
        health,
        poll_s=settings.model_poll_s,
        clock=clock,
    )
    producer = partial(
        make_producer, stream, client_id="headrace-api", max_block_ms=1_000, linger_ms=20
    )
    publisher = ImpressionPublisher(
        stream.topic_events, producer, settings.impression_queue_size, metrics
    )
    online = OnlineAggregates(requests_pipeline, health)
    age, entries = settings.cache_max_age_s, settings.cache_max_entries
    predictor = Predictor(
        holder,
        online,
        split,
        publisher,
        metrics,
        clock,
        shadow=Shadow(shadow, settings.shadow_rate) if shadow else None,
        publish_by_default=settings.publish_impressions,
        max_impressions=settings.max_impressions,
        items=ItemCache(online, metrics, age, entries, time.monotonic)
        if settings.item_cache
        else None,
        responses=ResponseCache(metrics, age, entries, time.monotonic)
        if settings.response_cache
        else None,
        cascades=cascades,
    )
    services = Services(
        settings=settings,
        metrics=metrics,
        health=health,
        holder=holder,
        predictor=predictor,
        decoder=decoder,
        key_digests=tuple(key_digest(k.get_secret_value()) for k in settings.api_keys),
        clock=clock,
        stream=stream,
        redis=connect(stream, socket_timeout=5),
        snapshots=_snapshots(settings, snapshot_settings, verify_keys),
        alerts=AlertFeed(
            stream.redis_url,
            alerts_key(stream.key_prefix),
            settings.max_alert_streams,
            password=stream.redis_password_value,
            sentinels=stream.sentinel_addresses,
            service=stream.redis_sentinel_service,
        ),
    )
    metrics.watch(
        lambda: [
            (m.shard, m.epoch, m.version, m.published_at) for m in holder.served.shards.values()
        ],
        lambda: (
            health.ok
            and len(holder.served.shards) == len(holder.shard_names)
            and not holder.missing
        ),
        lambda: health.ok,
        lambda: list(holder.missing),
        clock,
    )
    holder.start()
    publisher.start()
    closers = [holder.stop, publisher.stop, state_client.close, requests_pipeline.close]
    return services, [*closers, services.redis.close]


def _snapshots(
    settings: ApiSettings, snapshot_settings: SnapshotSettings, verify_keys: tuple[VerifyKey, ...]
) -> Snapshots | None:
    """The snapshot store for the admin routes (None while they are off), verifying only."""
    if not settings.admin_tokens():
        return None
    store = open_store(snapshot_settings, verify_keys)
    return Snapshots(snapshot_settings, store, verify_keys)


def _openapi(app: FastAPI, decoder: RequestDecoder) -> dict[str, Any]:
    """FastAPI's document, plus the msgspec schemas /predict really decodes and answers."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(openapi_components(decoder.type))
        app.openapi_schema = schema
    return app.openapi_schema
