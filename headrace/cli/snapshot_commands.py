"""`headrace snapshot ACTION`: the arguments. The actions live in `snapshots`, imported only
when one runs: the snapshot code loads River, slowly."""

import argparse

from headrace.cli.common import Command, Commands


def add_commands(commands: Commands) -> None:
    snap = commands.add_parser("snapshot", help="list, take, verify and restore snapshots")
    snap_commands = snap.add_subparsers(dest="action", required=True, metavar="ACTION")
    snap_commands.add_parser("list", help="every valid snapshot, oldest first").set_defaults(
        run=_action("list_")
    )
    snap_commands.add_parser("create", help="take a snapshot of the shard now").set_defaults(
        run=_action("create")
    )
    verify = snap_commands.add_parser("verify", help="verify snapshot files (signature, hash)")
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument(
        "--current-key-only",
        action="store_true",
        help="refuse files signed with a previous key (HEADRACE_VERIFY_PREVIOUS_KEYS)",
    )
    verify.set_defaults(run=_action("verify"))
    snap_commands.add_parser(
        "resign", help="re-sign every snapshot signed with a previous key with the current one"
    ).set_defaults(run=_action("resign"))
    restore = snap_commands.add_parser("restore", help="restore a snapshot as a new version")
    restore.add_argument("snapshot", help="a snapshot id, 'latest' or 'last_known_good'")
    restore.add_argument(
        "--no-replay", action="store_true", help="skip the events since the snapshot"
    )
    restore.add_argument("--no-wait", action="store_true", help="do not follow the replay")
    restore.set_defaults(run=_action("restore"))


def _action(name: str) -> Command:
    """`headrace snapshot NAME`, imported when run."""

    def run(args: argparse.Namespace) -> int:
        from headrace.cli import snapshots

        command: Command = getattr(snapshots, name)
        return command(args)

    return run
