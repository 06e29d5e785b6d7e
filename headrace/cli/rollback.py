"""`headrace rollback`: the running learner serves its last-known-good model again."""

import argparse

from headrace.cli.common import Commands
from stream.settings import StreamSettings


def add_commands(commands: Commands) -> None:
    rollback = commands.add_parser(
        "rollback", help="serve the last-known-good model again (the running learner acts)"
    )
    rollback.add_argument("--variant", default=None, help="one variant (default: every one)")
    rollback.add_argument("--reason", default="operator rollback", help="kept in the lineage")
    rollback.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from learner.layout import ShardKeys
    from learner.operations import roll_back
    from learner.redisconn import connect
    from learner.settings import LearnerSettings

    stream = StreamSettings()
    keys = ShardKeys(stream.key_prefix, LearnerSettings().shard)
    client = connect(stream)
    result = roll_back(client, keys, variant=args.variant, reason=args.reason)
    print(
        f"rolled back {', '.join(result['variants'])} of shard {keys.shard} to last known good "
        f"as version {result['version']}"
    )
    return 0
