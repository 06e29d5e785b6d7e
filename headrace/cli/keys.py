"""`headrace keys generate | public`: the learner's Ed25519 signing key."""

import argparse
import sys

from headrace.cli.common import Commands


def add_commands(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="make the learner's signing key; print its public key")
    key_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = key_commands.add_parser(
        "generate", help="write a new Ed25519 signing key to FILE (0600); print its public key"
    )
    generate.add_argument("file", metavar="FILE")
    generate.set_defaults(run=generate_run)
    key_commands.add_parser(
        "public",
        help="print the public key of HEADRACE_SIGNING_KEY(_FILE), for HEADRACE_VERIFY_KEY",
    ).set_defaults(run=public_run)


def generate_run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from snapshots.keys import SigningKey

    key = SigningKey.generate()
    path = Path(args.file)
    try:
        # O_EXCL: never overwrite a key (state and snapshots signed with it would be orphaned).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"headrace: error: {path} exists; keys are never overwritten", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w") as out:
        out.write(key.text + "\n")
    print(key.public.text)
    return 0


def public_run(args: argparse.Namespace) -> int:
    from snapshots.settings import SigningSettings

    print(SigningSettings().signer().public.text)
    return 0
