"""`headrace`: the command line, the composition root of every process."""

from headrace.cli.main import main

__all__ = ["main"]
