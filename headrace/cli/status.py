"""`headrace status`: one screen of the deployment's state."""

import argparse
import sys

from headrace.cli.common import Commands, positive_int
from stream.settings import StreamSettings

_HINT = (
    "`headrace stack up` starts the local stack; HEADRACE_REDIS_URL and "
    "HEADRACE_KAFKA_BOOTSTRAP say where they run"
)


def add_commands(commands: Commands) -> None:
    status = commands.add_parser(
        "status", help="one screen: stack, learners, lag, variants, quarantine, latest alerts"
    )
    status.add_argument("--json", action="store_true", help="the same facts as JSON")
    status.add_argument(
        "--alerts", type=positive_int, default=5, help="how many recent alerts (default 5)"
    )
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from learner.status import gather, render

    status = gather(StreamSettings(), n_alerts=args.alerts)
    if not status.redis_up:
        # Nothing else can be read: one line, as for any other failure.
        print(f"headrace: error: {status.problem} (hint: {_HINT})", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.buffer.write(status.to_json() + b"\n")
    else:
        print(render(status))
    if status.problem is not None:
        print(f"headrace: error: {status.problem} (hint: {_HINT})", file=sys.stderr)
        return 1
    return 0
