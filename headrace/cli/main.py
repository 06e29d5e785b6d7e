"""`headrace`: one command line for every process.

The composition root of each process: it builds settings from the environment, wires the
parts and runs them. Each command group has a module of its own here (its arguments and
what it runs); this one assembles them. Parsing stays in this package; the work lives in
the packages.
"""

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from pydantic import ValidationError

from headrace.cli import events, keys, learn, rollback, serve, snapshot_commands, stack, status
from headrace.cli.common import Command
from headrace.cli.hints import EXPECTED, one_line

_GROUPS = (stack, status, events, learn, serve, snapshot_commands, keys, rollback)
"""The command modules, in the order `headrace --help` lists their commands."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line with a hint, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"headrace: error: {message} (hint: `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="headrace",
        description="Online learning from a live clickstream. Settings come from HEADRACE_* "
        "environment variables (see the README).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in _GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except EXPECTED as exc:
        print(one_line(exc), file=sys.stderr)
        return 2 if isinstance(exc, ValidationError) else 1
    except KeyboardInterrupt:
        return 130
