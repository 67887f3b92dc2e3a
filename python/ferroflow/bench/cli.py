"""The `bench` subcommand: its options, and the run from options to report.

Only argparse and the registries of workloads and systems (which import no peer) load
with the parser, so `ferroflow --help` stays instant; the measuring machinery loads
when `bench` actually runs.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from .systems import BARE_LOOP, FERROFLOW, PEERS, SYSTEMS, System
from .workloads import WORKLOADS, Workload, size_label

_PEER_NAMES = [p.name for p in PEERS]


def _names(kind: str, known: list[str]) -> Callable[[str], list[str]]:
    """An argparse type: a comma-separated list of names out of `known`."""

    def parse(text: str) -> list[str]:
        names = list(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
        unknown = [name for name in names if name not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {kind} {unknown[0]!r} (choose from {', '.join(known)})")
        return names

    return parse


def _sizes(text: str) -> tuple[int, ...]:
    """`1e4,1e5`, `10000`, `10^4` or `1_000`: positive whole numbers, ascending."""
    sizes: list[int] = []
    for token in text.split(","):
        token = token.strip()
        try:
            base, _, exponent = token.partition("^")
            value = int(base) ** int(exponent) if exponent else float(base)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {token!r} (examples: 1e4, 10000, 10^4)") from None
        if value < 1 or value != int(value):
            raise argparse.ArgumentTypeError(f"a size must be a positive whole number, got {token!r}")
        sizes.append(int(value))
    return tuple(sorted(set(sizes)))


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number, `minimum` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {text}")
        return value

    return parse


def _workloads_help() -> str:
    lines = ["workloads (default sizes; --quick sizes):"]
    for w in WORKLOADS.values():
        sizes = ", ".join(map(size_label, w.sizes))
        quick = ", ".join(map(size_label, w.quick_sizes))
        fixed = "" if w.scalable else " [fixed size]"
        lines.append(f"  {w.name:<14} {w.measures} (N = {sizes}; {quick}){fixed}")
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time the standard workloads on ferroflow, the bare loop and installed peers",
        description=(
            "Runs the standard workloads on the bare Python loop, ferroflow, and every installed peer "
            f"({', '.join(_PEER_NAMES)}), each run in a fresh interpreter, rounds interleaved; prints "
            "medians: time per task, ratio to the bare loop and to ferroflow, peak memory per task, threads."
        ),
        epilog=_workloads_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", type=_names("workload", list(WORKLOADS)), metavar="W1,W2", help="run these workloads only"
    )
    parser.add_argument(
        "--peers",
        type=_names("peer", _PEER_NAMES),
        metavar="P1,P2",
        help="compare with these peers only ('' for none); default: every peer, those not installed listed as such",
    )
    parser.add_argument(
        "--sizes", type=_sizes, metavar="N1,N2", help="sizes for every workload but fixed-size ones, e.g. 1e4,1e5"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the smaller sizes: about half a minute with concurrent.futures alone"
    )
    parser.add_argument("--rounds", type=_at_least(1), default=3, metavar="R", help="rounds per size (default 3)")
    parser.add_argument(
        "--max-seconds",
        type=_positive,
        default=30.0,
        metavar="S",
        help="skip a system at larger sizes once a run took, or would take, longer than this (default 30)",
    )
    parser.add_argument(
        "--timeout", type=_positive, default=120.0, metavar="S", help="hard limit of one run (default 120)"
    )
    parser.add_argument(
        "--import-repeats",
        type=_at_least(0),
        default=5,
        metavar="K",
        help="fresh interpreters timing each system's import (default 5; 0 skips it)",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="write the report as JSON to FILE, or alone, to stdout instead of the table",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="plot per-task cost against N (needs matplotlib)")
    parser.set_defaults(handler=run)


def _selected_workloads(args: argparse.Namespace) -> list[Workload]:
    return [WORKLOADS[name] for name in (args.only or WORKLOADS)]


def _sizes_of(workload: Workload, args: argparse.Namespace) -> tuple[int, ...]:
    if args.sizes and workload.scalable:
        sizes: tuple[int, ...] = args.sizes  # parsed by `_sizes`
        return sizes
    return workload.quick_sizes if args.quick else workload.sizes


def _asked_systems(args: argparse.Namespace) -> list[System]:
    peers = _PEER_NAMES if args.peers is None else args.peers
    return [BARE_LOOP, FERROFLOW, *(SYSTEMS[name] for name in peers)]


def run(args: argparse.Namespace) -> int:
    from . import plot
    from .measure import environment, import_seconds
    from .results import Cell, Report, summarize
    from .runner import Outcome, Plan, Progress, run_plan
    from .table import footer, header, workload_table

    started = time.perf_counter()
    if args.plot and not plot.available():
        print(plot.MISSING, file=sys.stderr)
        return 2
    asked = _asked_systems(args)
    versions = {system.name: system.version() for system in asked}
    installed = [system for system in asked if versions[system.name]]
    workloads = _selected_workloads(args)
    plan = Plan(
        workloads=workloads,
        sizes={w.name: _sizes_of(w, args) for w in workloads},
        systems=installed,
        rounds=args.rounds,
        max_seconds=args.max_seconds,
        timeout=args.timeout,
    )
    progress = Progress(sys.stderr)
    environment_now = {**environment(), "versions": versions}
    systems = [
        {"name": s.name, "version": versions[s.name], "installed": bool(versions[s.name]), "setup": s.setup}
        for s in asked
    ]
    as_table = args.json != "-"  # with JSON on stdout, nothing else goes there
    if as_table:
        print(header(environment_now, args.rounds, systems), flush=True)
    cells: list[Cell] = []

    def workload_done(workload: Workload, outcome: Outcome) -> None:
        mine = [
            cell
            for size in plan.sizes[workload.name]
            for cell in summarize(outcome.runs, outcome.skipped, workload, size, installed)
        ]
        cells.extend(mine)
        if as_table:
            print(workload_table(mine), flush=True)

    modules = [system.module for system in installed if system.module]
    imports = import_seconds(modules, args.import_repeats) if args.import_repeats else {}
    outcome = run_plan(plan, progress, workload_done)
    report = Report(
        environment=environment_now,
        settings={
            "argv": sys.argv[1:],
            "rounds": args.rounds,
            "sizes": plan.sizes,
            "max_seconds": args.max_seconds,
            "timeout": args.timeout,
            "import_repeats": args.import_repeats,
        },
        systems=systems,
        workloads={w.name: w.measures for w in workloads},
        import_seconds=imports,
        runs=outcome.runs,
        summary=cells,
        total_seconds=time.perf_counter() - started,
    )
    if as_table:
        print(footer(report), end="")
        if args.json:
            with open(args.json, "w") as out:
                out.write(report.to_json() + "\n")
    else:
        print(report.to_json())
    if args.plot:
        print(plot.write(cells, args.plot), file=sys.stderr)
    progress.note("done")
    return 0
