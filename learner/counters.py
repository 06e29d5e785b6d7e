"""Names of the learner's per-reason counters (`Learner.counts`), for what reads them back.

The learner counts each quarantine rule and each rejection reason under a prefixed name;
the API, the history and `headrace status` list them by rule or reason.
"""

from collections.abc import Mapping

QUARANTINED = "quarantined_"
REJECTED = "rejected_"
MISROUTED = "misrouted"
"""Events on another partition than Kafka's default partitioner gives their user_id."""
BOUGHT_WITHIN = "bought_within_elapsed"
BOUGHT_AFTER = "bought_after_elapsed"
"""Purchases that came within the "esdfm" method's elapsed time of their impression, and
after it: the share after it weights what the method learns."""


def by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    """The counters named `prefix` + something, keyed by that something."""
    return {name[len(prefix) :]: n for name, n in counts.items() if name.startswith(prefix)}
