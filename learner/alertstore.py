"""Alerts in Redis: a capped stream per deployment, read by the API and dashboards.

The learner appends a publish's alerts inside that publish's transaction, so
an alert exists exactly when the state that raised it is committed (a replay
after a crash raises it once). Stream entry ids give the live feed its order.
"""

from typing import Any

import orjson
import redis

from guards.alerts import Alert
from learner.layout import alerts_key

MAX_ALERTS = 10_000

PAGE = 200
"""Entries one read of `recent` takes: a filter reads page after page, newest first."""

_MAX_PART = 2**64 - 1


def append(pipe: Any, prefix: str, alerts: list[Alert]) -> None:
    """Queue the alerts on a (transactional) pipeline."""
    for alert in alerts:
        pipe.xadd(
            alerts_key(prefix),
            {"alert": orjson.dumps(alert.to_dict())},
            maxlen=MAX_ALERTS,
            approximate=True,
        )


def decode(entries: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """Stream entries as Redis returns them, as (entry id, alert)."""
    return [(entry_id.decode(), orjson.loads(fields[b"alert"])) for entry_id, fields in entries]


def parse_id(text: str) -> tuple[int, int]:
    """An entry id `<ms>-<seq>` (e.g. a Last-Event-ID); ValueError for anything else."""
    ms, dash, seq = text.partition("-")
    if not (dash and ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        raise ValueError(f"not an alert id (<ms>-<seq>): {text[:60]!r}")
    parts = int(ms), int(seq)
    if max(parts) > _MAX_PART:
        raise ValueError(f"alert id out of range: {text[:60]!r}")
    return parts


def recent(
    client: redis.Redis,
    prefix: str,
    *,
    since: float | None = None,
    model: str | None = None,
    variant: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """The newest alerts (oldest first), filtered by event time, model and variant.

    Read newest first, a page at a time, until `limit` alerts match: without a filter one
    read of `limit` entries, with one only as far back as the matches go."""
    found: list[dict[str, Any]] = []
    key = alerts_key(prefix)
    filtered = since is not None or model or variant
    page = PAGE if filtered else limit
    upper = "+"
    while len(found) < limit:
        entries = decode(client.xrevrange(key, max=upper, count=page))
        for entry_id, alert in entries:
            if since is not None and alert["ts"] < since:
                continue
            if (model and alert["model"] != model) or (variant and alert["variant"] != variant):
                continue
            found.append({"stream_id": entry_id, **alert})
            if len(found) >= limit:
                break
        if len(entries) < page:
            break
        upper = "(" + entries[-1][0]
    found.reverse()
    return found
