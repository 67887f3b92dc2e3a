"""The report as plain text, printed as it is measured: a header saying how, then one
table per workload as soon as it is done (an aligned row per size and system), then the
import times, a legend of the columns and the total."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .results import OK, Cell, Report
from .workloads import size_label

_COLUMNS = ("workload", "N", "system", "time s", "µs/task", "× bare", "B/task", "threads", "× ferroflow", "note")
_TEXT_COLUMNS = {0, 1, 2, 9}

LEGEND = """\
time s: median wall time of the run, end to end (building the work, collecting the results)
µs/task: time per task run (two_stage_map has 2N runs, fan_in N+1, many_flows counts flow runs)
× bare: median of per-round ratios to the bare loop;  × ferroflow: the same against ferroflow (above 1: slower)
B/task: peak RSS (VmHWM) of the run minus the bare loop's at the same N, per task run; it includes
  the system's fixed cost (its import, its start-up), which weighs at small N
threads: most live OS threads seen during the run (sampled every 10 ms)"""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def significant(x: float, digits: int = 3) -> str:
    """`x` to about `digits` significant digits, never in scientific notation."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:.{decimals}f}"


def _optional(value: float | None, show: Callable[[Any], str]) -> str:
    return "" if value is None else show(value)


def _row(cell: Cell, first_of_group: bool) -> tuple[str, ...]:
    lead = (cell.workload, size_label(cell.size)) if first_of_group else ("", "")
    if cell.status != OK:
        return (*lead, cell.system, "", "", "", "", "", "", cell.note or cell.status)
    note = ""
    if cell.efficiency is not None and cell.seconds is not None:
        note = f"efficiency {cell.efficiency:.0%} (of the ideal {cell.seconds * cell.efficiency:g} s)"
    return (
        *lead,
        cell.system,
        _optional(cell.seconds, significant),
        _optional(cell.us_per_task, significant),
        _optional(cell.ratio_to_bare, significant),
        _optional(cell.rss_bytes_per_task, lambda b: f"{round(b):,}"),
        _optional(cell.max_threads, str),
        _optional(cell.ratio_to_ferroflow, significant),
        note,
    )


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines: list[str] = []
    for row in rows:
        fields = [
            text.ljust(w) if i in _TEXT_COLUMNS else text.rjust(w)
            for i, (text, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(fields).rstrip())
    return lines


def _table(cells: list[Cell]) -> list[str]:
    rows: list[tuple[str, ...]] = [_COLUMNS]
    groups: list[int] = []  # row index where each workload starts, for a blank line
    previous: tuple[str, int] | None = None
    for cell in cells:
        key = (cell.workload, cell.size)
        if previous is None or cell.workload != previous[0]:
            groups.append(len(rows))
        rows.append(_row(cell, key != previous))
        previous = key
    lines = _aligned(rows)
    for index in reversed(groups[1:]):
        lines.insert(index, "")
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def header(environment: dict[str, Any], rounds: int, systems: list[dict[str, Any]]) -> str:
    """What is measured and how: printed before the first run."""
    children = " ".join(f"{k}={v}" for k, v in environment["child_env"].items())
    lines = [
        (
            f"ferroflow bench: {plural(rounds, 'round')}, systems interleaved in each, medians; "
            "each run in a fresh interpreter, timed inside it"
        ),
        f"{environment['implementation']} {environment['python']} on {environment['platform']}, "
        f"{environment['cpu_count']} CPUs; children run with {children}",
        "systems:",
    ]
    width = max(len(f"{s['name']} {s['version'] or ''}") for s in systems)
    for system in systems:
        label = f"{system['name']} {system['version'] or ''}".strip().ljust(width)
        lines.append(f"  {label}  {system['setup'] if system['version'] else 'not installed'}")
    return "\n".join(lines) + "\n"


def workload_table(cells: list[Cell]) -> str:
    """One workload's rows, every size and system, under the column names: printed as
    soon as that workload is measured."""
    return "\n".join(_table(cells)) + "\n"


def footer(report: Report) -> str:
    """The import times, the legend of the columns and the total: printed at the end."""
    blocks = [_imports(report), LEGEND.splitlines(), [f"total {report.total_seconds:.1f} s"]]
    return "\n\n".join("\n".join(block) for block in blocks if block) + "\n"


def _imports(report: Report) -> list[str]:
    if not report.import_seconds:
        return []
    interpreters = plural(report.settings["import_repeats"], "fresh interpreter")
    timings = ", ".join(
        f"{module} {'failed' if seconds is None else f'{seconds * 1000:.1f} ms'}"
        for module, seconds in report.import_seconds.items()
    )
    return [f"import time (median of {interpreters}, minus `python -c pass`): {timings}"]
