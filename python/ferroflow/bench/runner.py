"""The schedule of a benchmark: for each workload and size, several rounds, each
running every system once, in a rotating order so no system always goes first.

A system that is too slow at one size (over `max_seconds` per run, or projected over it
at the next size, assuming time grows linearly with N) is skipped at the larger sizes of
that workload; one that fails (wrong result, crash, timeout) stops there too. Both
are recorded, so the table says why a number is missing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from .measure import run_child
from .results import OK, Run
from .systems import System
from .table import significant
from .workloads import Workload, size_label


@dataclass(frozen=True)
class Plan:
    workloads: list[Workload]
    #: The sizes of each workload, by name, ascending.
    sizes: dict[str, tuple[int, ...]]
    #: The installed systems to run, in table order.
    systems: list[System]
    rounds: int
    max_seconds: float
    timeout: float


@dataclass
class Outcome:
    runs: list[Run] = field(default_factory=list)
    #: Why a (workload, size, system) was not run.
    skipped: dict[tuple[str, int, str], str] = field(default_factory=dict)


class Progress:
    """One line per run on a stream (stderr): what runs, since when, and how it went."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.perf_counter()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _stamp(self) -> str:
        return f"[{time.perf_counter() - self.started:7.1f} s]"

    def starting(self, workload: str, size: int, system: str, round_: int, rounds: int) -> None:
        self._write(f"{self._stamp()} {workload} N={size_label(size)} round {round_}/{rounds} {system} ... ")

    def finished(self, run: Run) -> None:
        self._write(
            f"{significant(run.seconds)} s\n" if run.status == OK and run.seconds is not None else f"{run.detail}\n"
        )

    def note(self, text: str) -> None:
        self._write(f"{self._stamp()} {text}\n")


def too_slow(seconds: float, at_size: int, next_size: int, max_seconds: float) -> str | None:
    """Why a system that took `seconds` at `at_size` should not run at `next_size`."""
    if seconds > max_seconds or seconds * next_size / at_size > max_seconds:
        return f"skipped (too slow: {seconds:.3g} s at {size_label(at_size)})"
    return None


def _rotated(systems: list[System], round_: int) -> list[System]:
    shift = (round_ - 1) % len(systems) if systems else 0
    return systems[shift:] + systems[:shift]


def run_plan(plan: Plan, progress: Progress, workload_done: Callable[[Workload, Outcome], None]) -> Outcome:
    """Runs the plan; `workload_done` is called after each workload, with the outcome so far."""
    outcome = Outcome()
    for workload in plan.workloads:
        systems = [s for s in plan.systems if workload.name not in s.not_applicable]
        stopped: dict[str, str] = {}  # system -> why it does not go on with this workload
        previous: dict[str, tuple[int, float]] = {}  # system -> (size, median seconds)
        for size in plan.sizes[workload.name]:
            for name, (at_size, seconds) in previous.items():
                why = too_slow(seconds, at_size, size, plan.max_seconds)
                if why and name not in stopped:
                    stopped[name] = why
                    progress.note(f"{workload.name} N={size_label(size)} {name}: {why}")
            for name, why in stopped.items():
                outcome.skipped[(workload.name, size, name)] = why
            times: dict[str, list[float]] = {}
            for round_ in range(1, plan.rounds + 1):
                for system in _rotated(systems, round_):
                    if system.name in stopped:
                        continue
                    progress.starting(workload.name, size, system.name, round_, plan.rounds)
                    run = run_child(workload.name, size, system.name, round_, plan.timeout)
                    progress.finished(run)
                    outcome.runs.append(run)
                    if run.status != OK:
                        stopped[system.name] = f"skipped ({run.status} at {size_label(size)})"
                    elif run.seconds is not None:
                        times.setdefault(system.name, []).append(run.seconds)
            previous = {name: (size, statistics.median(t)) for name, t in times.items() if name not in stopped}
        workload_done(workload, outcome)
    return outcome
