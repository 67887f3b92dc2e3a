"""Measurements and their summary: medians over rounds, and the ratios the issue's
targets are stated in.

Ratios are medians of per-round ratios: rounds interleave the systems, so a round's
two measurements saw the same machine, and noise that hits one round cancels out.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass
from typing import Any

from .systems import BARE_LOOP, FERROFLOW, System
from .workloads import Workload

OK = "ok"


@dataclass(frozen=True)
class Run:
    """One measurement: a system ran a workload once at a size, in a fresh interpreter."""

    workload: str
    size: int
    system: str
    round: int
    #: "ok", or what went wrong: "wrong result", "failed", "crashed", "timed out";
    #: `detail` then says it in a sentence.
    status: str
    seconds: float | None = None
    peak_rss_bytes: int | None = None
    max_threads: int | None = None
    detail: str | None = None
    #: The end of the child's stderr when it failed, to see why.
    stderr: str | None = None


@dataclass(frozen=True)
class Cell:
    """A system's summary at one workload and size: a row of the table."""

    workload: str
    size: int
    system: str
    #: "ok", "failed", "skipped" or "n/a"; `note` says why when not ok.
    status: str
    note: str | None = None
    rounds: int = 0
    seconds: float | None = None
    us_per_task: float | None = None
    ratio_to_bare: float | None = None
    rss_bytes_per_task: float | None = None
    max_threads: int | None = None
    ratio_to_ferroflow: float | None = None
    efficiency: float | None = None


#: A system's successful runs at one workload and size, by round.
ByRound = dict[int, Run]


def _seconds(runs: ByRound) -> dict[int, float]:
    return {round_: run.seconds for round_, run in runs.items() if run.seconds is not None}


def _median_ratio(mine: ByRound, theirs: ByRound) -> float | None:
    numerators, denominators = _seconds(mine), _seconds(theirs)
    rounds = numerators.keys() & denominators.keys()
    if not rounds:
        return None
    return statistics.median(numerators[r] / denominators[r] for r in rounds)


def _median_rss(runs: ByRound) -> float | None:
    peaks = [run.peak_rss_bytes for run in runs.values() if run.peak_rss_bytes is not None]
    return statistics.median(peaks) if peaks else None


def _measured(workload: Workload, size: int, system: str, ok: dict[str, ByRound]) -> Cell:
    mine, bare = ok[system], ok.get(BARE_LOOP.name, {})
    median = statistics.median(_seconds(mine).values())
    task_runs = workload.task_runs(size)
    own_rss, bare_rss = _median_rss(mine), _median_rss(bare)
    threads = [run.max_threads for run in mine.values() if run.max_threads is not None]
    return Cell(
        workload.name,
        size,
        system,
        OK,
        rounds=len(mine),
        seconds=median,
        us_per_task=median / task_runs * 1e6,
        ratio_to_bare=_median_ratio(mine, bare),
        rss_bytes_per_task=None if own_rss is None or bare_rss is None else (own_rss - bare_rss) / task_runs,
        max_threads=max(threads) if threads else None,
        ratio_to_ferroflow=_median_ratio(mine, ok.get(FERROFLOW.name, {})),
        efficiency=workload.ideal_seconds(size) / median if workload.ideal_seconds else None,
    )


def summarize(
    runs: list[Run], skipped: dict[tuple[str, int, str], str], workload: Workload, size: int, systems: list[System]
) -> list[Cell]:
    """The cells of one workload at one size, a system each, in `systems`' order."""
    here = [run for run in runs if run.workload == workload.name and run.size == size]
    ok = {s.name: {r.round: r for r in here if r.system == s.name and r.status == OK} for s in systems}
    cells: list[Cell] = []
    for system in systems:
        name = system.name
        failures = [r for r in here if r.system == name and r.status != OK]
        if workload.name in system.not_applicable:
            cells.append(Cell(workload.name, size, name, "n/a", system.not_applicable[workload.name]))
        elif failures:
            cells.append(Cell(workload.name, size, name, "failed", failures[0].detail or failures[0].status))
        elif not ok[name]:
            cells.append(Cell(workload.name, size, name, "skipped", skipped.get((workload.name, size, name))))
        else:
            cells.append(_measured(workload, size, name, ok))
    return cells


@dataclass(frozen=True)
class Report:
    """Everything one `ferroflow bench` found, and under which conditions."""

    environment: dict[str, Any]
    #: The options the run used (rounds, sizes by workload, limits).
    settings: dict[str, Any]
    #: Each system asked for: name, version (None: not installed), setup.
    systems: list[dict[str, Any]]
    #: What each workload measures, by name.
    workloads: dict[str, str]
    #: Import time of each installed system's module, seconds.
    import_seconds: dict[str, float | None]
    runs: list[Run]
    #: A row per workload, size and system: medians, ratios, or why there are none.
    summary: list[Cell]
    total_seconds: float

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)
