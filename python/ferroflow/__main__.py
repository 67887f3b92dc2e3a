"""The `ferroflow` command (also `python -m ferroflow`): subcommands, loaded lazily.

`import ferroflow` never imports this module or the subcommands' packages, so the
library's import stays fast; only running the command does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def main(argv: list[str] | None = None) -> int:
    from ferroflow import __version__
    from ferroflow.bench.cli import add_parser as add_bench_parser

    parser = argparse.ArgumentParser(
        prog="ferroflow", description="Prefect-style flows and tasks on a Rust scheduling core."
    )
    parser.add_argument("--version", action="version", version=f"ferroflow {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    add_bench_parser(subparsers)
    args = parser.parse_args(argv)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler  # set by the subcommand
        return handler(args)
    except KeyboardInterrupt:
        print(f"ferroflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
