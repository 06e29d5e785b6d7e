"""`headrace stack up | down | status`: the local Kafka and Redis."""

import argparse

from headrace.cli.common import Commands
from stream.settings import StreamSettings


def add_commands(commands: Commands) -> None:
    stack = commands.add_parser("stack", help="start, stop or inspect the local Kafka and Redis")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--brokers",
        type=int,
        choices=range(1, 10),
        metavar="N",
        help="Kafka brokers to run (default HEADRACE_KAFKA_BROKERS, else as the stack in "
        "HEADRACE_STACK_DIR was started, else 1); 3 gives replication 3",
    )
    stack.add_argument(
        "--redis",
        choices=["single", "sentinel"],
        help="one Redis server, or a primary, a replica and three sentinels "
        "(default HEADRACE_STACK_REDIS, else as the stack was started, else single)",
    )
    stack.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from headrace.devstack import shape, stack

    chosen: dict[str, object] = {}
    if args.brokers is not None:
        chosen["kafka_brokers"] = args.brokers
    if args.redis is not None:
        chosen["stack_redis"] = args.redis
    # Keyword arguments win over the environment, and the validators widen the addresses.
    # Where neither chooses a shape, the folder's stack keeps the one it was started with.
    settings = shape.as_started(StreamSettings(**chosen))  # type: ignore[arg-type]
    if args.action == "up":
        result = stack.up(settings)
    elif args.action == "down":
        result = stack.down(settings)
    else:
        result = stack.status(settings)
    print(result)
    if args.action == "up" and (settings.kafka_brokers > 1 or settings.sentinel_addresses):
        # Every client must be told the whole shape, not just the first address.
        print(f"export HEADRACE_KAFKA_BOOTSTRAP={settings.kafka_bootstrap}")
        if settings.sentinel_addresses:
            print(f"export HEADRACE_REDIS_SENTINELS={settings.redis_sentinels}")
    return 0 if args.action != "status" or result.all_running else 3
