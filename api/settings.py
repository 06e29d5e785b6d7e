"""Settings of the prediction API (`headrace serve`).

Connections and topics come from `stream.settings.StreamSettings`; this class holds what
only the API reads. Built by the composition root (`api.app.app_from_env`, the CLI, a
test), never at import time.
"""

import math
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from api.cascadespec import EVERY_SHARD, CascadeSpec

# Words people leave in example configs: a token containing one of them (any case, any
# separators) is a placeholder, however long.
_PLACEHOLDER_WORDS = ("changeme", "changethis", "placeholder", "example", "yourtoken", "secret")
MIN_TOKEN_CHARS = 16


class ApiSettings(BaseSettings):
    """How the API listens, what it accepts, how it splits traffic, how it watches models."""

    # A refused token or key must not be printed back in the error that refuses it.
    model_config = SettingsConfigDict(
        env_prefix="HEADRACE_", extra="ignore", hide_input_in_errors=True
    )

    host: str = "127.0.0.1"
    """Address `headrace serve` binds to (0.0.0.0 in a container)."""

    port: int = Field(default=8000, ge=1, le=65535)
    """Port `headrace serve` listens on."""

    max_candidates: int = Field(default=1_000, ge=1, le=100_000)
    """Most candidates one /predict request may carry; more is a 422."""

    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    """Largest /predict body in bytes; a larger one is refused with 413 before it is parsed."""

    traffic: dict[str, float] = {}
    """Share of users per variant, as JSON: '{"main": 0.9, "tree": 0.1}'. Empty: every user
    gets each shard's first variant. Shares are normalised; a user always gets the same one."""

    shadow_variant: str | None = None
    """A variant scored on every request (see shadow_rate) and compared, but never returned."""

    shadow_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests the shadow variant also scores (after the response is sent)."""

    cascade: dict[str, CascadeSpec] = {}
    """A cascade per shard, as JSON: '{"first": "main", "then": "fm", "top": 50}' for every
    shard, or '{"eu": {...}, "us": {...}}' by shard name. Users served `first` get it:
    `first` ranks every candidate and `then` re-scores the best `top` (docs/api.md,
    "Cascade"). Empty (the default): one variant scores everything."""

    export_models: bool = False
    """Serve GET /models/{shard}/{variant}/export: the logistic model's weights as JSON for
    api/static/scorer.js. Off by default: whoever reaches the route has the weights and the
    one-hot vocabulary (every query text, category and brand the model holds a weight for)."""

    publish_impressions: bool = False
    """Publish an `impression` event per returned candidate to the events topic by default
    (a request's `publish_impressions: false` turns it off). Off, only an authenticated
    caller (HEADRACE_API_KEYS) may ask for it with `publish_impressions: true`."""

    max_impressions: int = Field(default=100, ge=1, le=100_000)
    """Most impressions one response publishes: the first this many returned candidates
    (best first with top_k); the rest are counted as dropped (`request_cap`)."""

    impression_queue_size: int = Field(default=10_000, ge=1)
    """Most requests whose impressions may wait for Kafka; past it they are dropped, counted."""

    api_keys: Annotated[list[SecretStr], NoDecode] = []
    """Keys accepted by /predict, /drift/* and /dashboard/history (X-API-Key or
    Authorization: Bearer), comma separated; each at least 16 characters, not a
    placeholder. Empty: those routes are open, and no caller may publish impressions."""

    max_alert_streams: int = Field(default=100, ge=1, le=100_000)
    """Live alert streams (/drift/alerts/stream) one worker serves at once; one more is
    answered 503 with Retry-After. They share one Redis reader."""

    model_poll_s: float = Field(default=1.0, gt=0.0, le=60.0)
    """Seconds between version checks besides the versions channel (missed messages, Redis
    outages): the most a replica lags behind a publish, and how soon it sees Redis again."""

    gc_young_threshold: int = Field(default=10_000, ge=0, le=1_000_000)
    """Allocations between the collector's youngest-generation passes in the server
    process (Python's own is 700), set for the lifespan. Requests allocate and free
    thousands of short-lived lists and dicts: at 700 a pass ran every ~9 requests of 100
    candidates and walked the objects of the 16 in flight, 2-3 % of the CPU a request;
    at 10,000 none ran in 12,000 such requests (docs/api.md, "Performance"). 0 leaves
    Python's own."""

    redis_timeout_s: float = Field(default=0.25, gt=0.0, le=30.0)
    """Socket timeout of the per-request feature look-ups; past it the request is served
    from empty aggregates (degraded) rather than waiting."""

    item_cache: bool = False
    """Keep items' aggregates per worker for up to cache_max_age_s: a request then reads
    only its user's hash and the items not cached (docs/api.md, "Caches")."""

    response_cache: bool = False
    """Reuse whole answers for users without history (anonymous and new users), per
    worker, for up to cache_max_age_s and never across model versions."""

    cache_max_age_s: float = Field(default=1.0, gt=0.0, le=300.0)
    """The most seconds an answer's aggregates may be older than the answer when a cache
    is on: the bound on staleness both caches keep."""

    cache_max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    """Most items, and most candidates of cached answers (an answer of 100 candidates
    counts 100), one worker caches per shard and generation; past it, nothing more is
    cached until the next generation (at most cache_max_age_s later)."""

    model_load_timeout_s: float = Field(default=10.0, gt=0.0, le=600.0)
    """Socket timeout of the background reads of model state (large blobs take a while)."""

    admin_token: SecretStr | None = None
    """Bearer token of the admin routes; None turns them off. At least 16 characters and
    not a placeholder such as "changeme"."""

    admin_previous_tokens: Annotated[list[SecretStr], NoDecode] = []
    """Tokens retired by a rotation (HEADRACE_ADMIN_PREVIOUS_TOKENS), comma separated:
    still accepted while replicas and operators move to HEADRACE_ADMIN_TOKEN. Empty it
    once they have (docs/operations.md, "Rotate the admin token")."""

    @field_validator("traffic")
    @classmethod
    def _check_traffic(cls, value: dict[str, float]) -> dict[str, float]:
        for name, share in value.items():
            if not name:
                raise ValueError("a traffic variant needs a name")
            if not math.isfinite(share) or share < 0:
                raise ValueError(f"traffic share of {name!r} must be a finite number >= 0")
        if value and sum(value.values()) <= 0:
            raise ValueError("traffic shares must not all be 0")
        return value

    @field_validator("cascade", mode="before")
    @classmethod
    def _one_for_every_shard(cls, value: Any) -> Any:
        if isinstance(value, dict) and "first" in value:
            return {EVERY_SHARD: value}
        return value

    @field_validator("api_keys", "admin_previous_tokens", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _check_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            _check_token("api_keys", key.get_secret_value())
        return value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        # An empty HEADRACE_ADMIN_TOKEN (e.g. compose's `${HEADRACE_ADMIN_TOKEN:-}`) means off.
        return None if value == "" else value

    @field_validator("admin_token")
    @classmethod
    def _check_admin_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _check_token("admin_token", value.get_secret_value())
        return value

    @field_validator("admin_previous_tokens")
    @classmethod
    def _check_previous_tokens(cls, value: list[SecretStr]) -> list[SecretStr]:
        for token in value:
            _check_token("admin_previous_tokens", token.get_secret_value())
        return value

    def admin_tokens(self) -> list[str]:
        """Every token the admin routes accept: the current one first, then retired ones.

        None at all when the admin routes are off (no HEADRACE_ADMIN_TOKEN)."""
        if self.admin_token is None:
            return []
        previous = [t.get_secret_value() for t in self.admin_previous_tokens]
        return [self.admin_token.get_secret_value(), *previous]


def _check_token(name: str, token: str) -> None:
    squashed = "".join(ch for ch in token.lower() if ch.isalnum())
    if any(word in squashed for word in _PLACEHOLDER_WORDS) or len(set(token)) < 4:
        raise ValueError(f"{name} is a placeholder; set a real random secret")
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{name} must have at least {MIN_TOKEN_CHARS} characters")
