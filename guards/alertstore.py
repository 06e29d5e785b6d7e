"""Alerts in Redis: a capped stream per deployment, read by the API and dashboards.

The learner appends a publish's alerts inside that publish's transaction, so
an alert exists exactly when the state that raised it is committed (a replay
after a crash raises it once). Stream entry ids give the live feed its order.
"""

from typing import Any

import orjson
import redis

from guards.alerts import Alert

MAX_ALERTS = 10_000


def alerts_key(prefix: str) -> str:
    return f"{prefix}:alerts"


def append(pipe: Any, prefix: str, alerts: list[Alert]) -> None:
    """Queue the alerts on a (transactional) pipeline."""
    for alert in alerts:
        pipe.xadd(
            alerts_key(prefix),
            {"alert": orjson.dumps(alert.to_dict())},
            maxlen=MAX_ALERTS,
            approximate=True,
        )


def _decode(entries: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(entry_id.decode(), orjson.loads(fields[b"alert"])) for entry_id, fields in entries]


def recent(
    client: redis.Redis,
    prefix: str,
    *,
    since: float | None = None,
    model: str | None = None,
    variant: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest alerts (oldest first), filtered by event time, model and variant."""
    found: list[dict[str, Any]] = []
    for entry_id, alert in _decode(client.xrevrange(alerts_key(prefix), count=MAX_ALERTS)):
        if since is not None and alert["ts"] < since:
            continue
        if (model and alert["model"] != model) or (variant and alert["variant"] != variant):
            continue
        found.append({"stream_id": entry_id, **alert})
        if len(found) >= limit:
            break
    found.reverse()
    return found


def after(
    client: redis.Redis, prefix: str, last_id: str, block_ms: int
) -> list[tuple[str, dict[str, Any]]]:
    """Alerts appended after `last_id` ("$": from now), waiting up to `block_ms` for one."""
    reply = client.xread({alerts_key(prefix): last_id}, block=block_ms, count=100)
    return _decode(reply[0][1]) if reply else []
