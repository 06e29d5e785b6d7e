"""What every command module of the CLI shares: a command's shape and the argument types."""

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

Command = Callable[[argparse.Namespace], int]
"""A command runs with its parsed arguments and returns the process's exit status."""

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""Where a command module adds its commands: the subparsers of `headrace` (argparse names
their class only privately)."""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def start_time(text: str) -> datetime:
    """Event time of the simulator's first event; 'now' keeps a live demo's watermark moving."""
    try:
        start = datetime.now(UTC) if text == "now" else datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc
    if start.tzinfo is None:
        raise argparse.ArgumentTypeError("--start needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return start
