"""Guard state across restarts: whether a restored guard may carry on as it was.

A guard's state is pickled into the learner's committed state. After an upgrade
that changed a guard's layout, or a restart with other guard settings, that
state was written by other code or for other thresholds: carrying on with it
would crash, or keep applying the old thresholds. Such state is not resumed;
the guard starts afresh under the running code and configuration.
"""

from typing import Any

STATE_VERSION = 10
"""Bump whenever a guard's pickled attributes change meaning or shape."""


def resumable(restored: Any, fresh: Any) -> bool:
    """True when `restored` was written by this code, with the settings `fresh` runs with."""
    return (
        type(restored) is type(fresh)
        # An instance attribute, so state pickled before versioning has none.
        and getattr(restored, "state_version", None) == STATE_VERSION
        and getattr(restored, "settings", None) == fresh.settings
    )
