"""The shape the last `up` started in a stack folder (how many brokers, which Redis), kept
beside the stack.

`status` and `down` read it where their settings choose no shape (neither as an argument
nor in the environment), so `headrace stack status` describes the stack that runs, not the
default one-broker shape.
"""

import json
from pathlib import Path

from stream.settings import StreamSettings

FILE = "stack-shape.json"
FIELDS = ("kafka_brokers", "stack_redis")
"""The settings that make a stack's shape: `--brokers` and `--redis` of `headrace stack up`."""


def _path(settings: StreamSettings) -> Path:
    return Path(settings.stack_dir).expanduser().resolve() / FILE


def record(settings: StreamSettings) -> None:
    """Keep `settings`' shape as the one started in their folder (written atomically)."""
    path = _path(settings)
    temp = path.with_name(path.name + ".tmp")
    temp.write_text(json.dumps({name: getattr(settings, name) for name in FIELDS}) + "\n")
    temp.replace(path)


def as_started(settings: StreamSettings) -> StreamSettings:
    """`settings` with the recorded shape wherever they choose none themselves; as they are
    when nothing was recorded (or the record is unreadable)."""
    try:
        recorded = json.loads(_path(settings).read_text())
    except (OSError, ValueError):
        return settings
    if not isinstance(recorded, dict):
        return settings
    update = {
        name: recorded[name]
        for name in FIELDS
        if name in recorded and name not in settings.model_fields_set
    }
    if not update:
        return settings
    # Validated again, so the addresses widen to the recorded shape as they would have.
    return StreamSettings.model_validate({**settings.model_dump(), **update})
