"""`headrace schema` and `headrace simulate`: the event contract, and a stream that keeps it."""

import argparse
import json

from headrace.cli.common import Commands, positive_int, start_time
from stream.settings import StreamSettings


def add_commands(commands: Commands) -> None:
    schema = commands.add_parser("schema", help="print the events' JSON Schema")
    schema.set_defaults(run=schema_run)

    sim = commands.add_parser("simulate", help="publish a seeded yarn-store clickstream to Kafka")
    sim.add_argument("--seed", type=int, default=7, help="same seed, same events (default 7)")
    sim.add_argument(
        "--rate", type=float, default=None, help="events per second (default: flat out)"
    )
    sim.add_argument("--count", type=positive_int, default=None, help="events to publish")
    sim.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds to run at most (with --rate: rate x duration events, fewer if the rate "
        "is not reached in time)",
    )
    sim.add_argument("--users", type=positive_int, default=2_000)
    sim.add_argument("--items", type=positive_int, default=500)
    sim.add_argument("--drift-at", type=positive_int, default=None, help="event count of a drift")
    sim.add_argument(
        "--attack-at", type=positive_int, default=None, help="event count of an attack"
    )
    sim.add_argument("--malformed-rate", type=float, default=0.0, help="share of broken records")
    sim.add_argument(
        "--start",
        type=start_time,
        default=None,
        help="event time of the first event: RFC 3339 or 'now'",
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.add_argument(
        "--json", action="store_true", help="the closing report as JSON (counts by type, rate)"
    )
    sim.set_defaults(run=simulate_run)


def schema_run(args: argparse.Namespace) -> int:
    from stream.events import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def simulate_run(args: argparse.Namespace) -> int:
    from headrace.sim.publish import simulate
    from headrace.sim.simulator import DEFAULT_START, SimulatorConfig

    count = args.count
    if count is None and args.duration is not None and args.rate is not None:
        count = int(args.duration * args.rate)
    config = SimulatorConfig(
        start=args.start or DEFAULT_START,
        seed=args.seed,
        n_users=args.users,
        n_items=args.items,
        count=count,
        drift_at=args.drift_at,
        attack_at=args.attack_at,
        malformed_rate=args.malformed_rate,
    )
    report = simulate(
        StreamSettings(),
        config,
        rate=args.rate,
        progress=not args.quiet,
        duration=args.duration,
    )
    print(json.dumps(report.as_dict()) if args.json else report)
    return 0
