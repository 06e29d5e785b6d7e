"""Names of the learner's per-reason counters (`Learner.counts`), for what reads them back.

The learner counts each quarantine rule and each rejection reason under a prefixed name;
the API, the history and `headrace status` list them by rule or reason.
"""

from collections.abc import Mapping

QUARANTINED = "quarantined_"
REJECTED = "rejected_"
MISROUTED = "misrouted"
"""Events on another partition than Kafka's default partitioner gives their user_id."""


def by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    """The counters named `prefix` + something, keyed by that something."""
    return {name[len(prefix) :]: n for name, n in counts.items() if name.startswith(prefix)}
