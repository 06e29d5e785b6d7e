"""Reading one shard's published state and turning it into models ready to serve.

The version, the meta and the model blobs come from ONE HGETALL of the state hash. The
learner writes them in one MULTI/EXEC, and Redis runs a command between transactions,
never inside one, so what is read belongs to one publish: a version never names models
it did not publish.

States compare by (epoch, version) (learner/epoch.py): a state is newer when its epoch is,
whatever its version number, so a restore or a learner that took over after Redis lost
its last writes is followed although it numbers its versions lower.

Nothing is deserialized before the state's signature verified (learner/signing.py): the
learner's key must have signed this prefix, shard and version, and each model blob is
checked against its signed SHA-256 before it is unpickled. A blob whose signed digest is
the one already loaded is not read again.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis

from learner import modelcodec
from learner.epoch import NO_STATE, Stamp
from learner.features import FeatureConfig
from learner.fmscorer import FMScorer
from learner.layout import META, ShardKeys, decode_meta, model_field, stamp_of
from learner.linear import LinearScorer
from learner.signing import Seal, VerifiedState
from learner.storestats import StoreStats


@dataclass(frozen=True, slots=True)
class LoadedVariant:
    """A deserialized model, with its numpy scorer when it has one (the logistic pipeline,
    the factorization machine)."""

    name: str
    kind: str
    model: Any
    scorer: LinearScorer | FMScorer | None
    digest: str
    """The blob's signed SHA-256: an unchanged variant is not deserialized again."""


@dataclass(frozen=True, slots=True)
class ShardModel:
    """One shard's state as of one version: what requests routed to it are scored with."""

    shard: str
    keys: ShardKeys
    version: int
    meta: dict[str, Any]
    variants: dict[str, LoadedVariant]
    """The variants this replica serves or shadows (others are listed in meta only)."""
    default_variant: str
    """The shard's first variant: the answer for users whose variant it does not have."""
    feature_config: FeatureConfig
    published_at: float
    loaded_at: float
    epoch: int = 0
    store: StoreStats | None = None
    """The store-wide counts the features read, as this version published them."""

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.epoch, self.version)

    @property
    def variant_names(self) -> list[str]:
        return list(self.meta.get("variants", {}))


WantedVariants = Callable[[list[str]], Iterable[str]]
"""Given a shard's variant names (in order), the ones to deserialize."""


def load_shard(
    client: redis.Redis,
    keys: ShardKeys,
    previous: ShardModel | None,
    wanted: WantedVariants,
    seal: Seal,
    clock: Callable[[], float] = time.time,
    any_version: bool = False,
) -> ShardModel | None:
    """The shard's current state if its (epoch, version) is newer than `previous`'s; else
    `previous` (or None).

    With `any_version` the state is taken whatever its stamp (the state `previous` came
    from is gone from Redis); `previous` still spares deserializing unchanged blobs.

    Raises redis errors (the caller retries later), learner.errors.UnverifiedStateError for
    state whose signature does not verify and learner.errors.StateError for a blob that
    does not deserialize (the caller keeps serving `previous` in both cases).
    """
    raw: dict[bytes, bytes] = client.hgetall(keys.state)
    stored = stamp_of(raw)
    if stored == NO_STATE or META.encode() not in raw:
        return previous

    def stale(stamp: Stamp) -> bool:
        return previous is not None and stamp <= previous.stamp and not any_version

    if stale(stored):
        return previous
    state = seal.verify(raw, keys)
    # What was signed decides, not what the hash says (an epoch written around the learner).
    stamp = Stamp(state.epoch, state.version)
    if stale(stamp):
        return previous
    meta = decode_meta(state.field(META))
    names = list(meta.get("variants", {}))
    if not names:
        return previous
    variants: dict[str, LoadedVariant] = {}
    for name in dict.fromkeys([names[0], *wanted(names)]):
        if name not in meta["variants"] or state.digest(model_field(name)) is None:
            continue
        old = previous.variants.get(name) if previous is not None else None
        variants[name] = _variant(name, meta["variants"][name].get("kind", "?"), state, old)
    if names[0] not in variants:
        return previous
    return ShardModel(
        shard=keys.shard,
        keys=keys,
        version=stamp.version,
        epoch=stamp.epoch,
        meta=meta,
        variants=variants,
        default_variant=names[0],
        feature_config=(config := FeatureConfig(**meta.get("feature_config", {}))),
        published_at=float(meta.get("published_at", 0.0)),
        loaded_at=clock(),
        store=StoreStats.load(meta.get("store_stats"), config.half_life_s),
    )


def _variant(
    name: str, kind: str, state: VerifiedState, old: LoadedVariant | None
) -> LoadedVariant:
    field = model_field(name)
    digest = state.digest(field)
    if old is not None and old.digest == digest:
        return old
    model = modelcodec.loads(state.field(field))  # checked against its signed digest first
    assert digest is not None
    return LoadedVariant(name, kind, model, scorer_for(model), digest)


def scorer_for(model: Any) -> LinearScorer | FMScorer | None:
    """The numpy scorer of `model`, when it has one (else River scores it row by row)."""
    return LinearScorer.from_model(model) or FMScorer.from_model(model)
