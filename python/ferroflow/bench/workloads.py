"""The standard workloads: what each computes, at which sizes, and its right answer.

A workload is defined here once; `implementations/` writes it idiomatically for each
system from the same task bodies (`inc`, `total`, `nap`), and every result is checked
against `expected`, so a fast wrong answer is reported as an error, never as a time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: How long each `sleep_fanout` task sleeps, and on how many workers they run.
NAP_SECONDS = 0.05
SLEEP_FANOUT_WORKERS = 20


def inc(x: int) -> int:
    """The trivial task: its cost is the floor the schedulers are compared against."""
    return x + 1


def total(numbers: list[int]) -> int:
    """The fan-in task: one run that takes every upstream result."""
    return sum(numbers)


#: Rounds of `crunch`'s loop: about 2 ms of pure-Python CPU per task on a current core.
CRUNCH_ROUNDS = 25_000


def crunch(x: int) -> int:
    """A CPU-bound task (pure Python, holding the GIL throughout): only processes help."""
    total = x
    for i in range(CRUNCH_ROUNDS):
        total += i * i % 7
    return total


def _crunched(n: int) -> list[int]:
    base = crunch(0)
    return [base + x for x in range(n)]


def nap(x: int) -> int:
    """A task that blocks without using the CPU (I/O-like), so only concurrency helps."""
    time.sleep(NAP_SECONDS)
    return x


@dataclass(frozen=True)
class Workload:
    name: str
    #: What the workload measures (shown by `--help` and in the JSON).
    measures: str
    sizes: tuple[int, ...]
    #: The sizes of `--quick`, also the full sizes of the pytest-benchmark suite.
    quick_sizes: tuple[int, ...]
    #: The right answer for size N.
    expected: Callable[[int], Any]
    #: Task (or flow) runs at size N: the per-task cost is the time divided by this.
    task_runs: Callable[[int], int] = lambda n: n
    #: Workers the systems are given; None leaves each system its default.
    workers: int | None = None
    #: The best possible time at size N, when the work itself bounds it (blocking tasks).
    ideal_seconds: Callable[[int], float] | None = None
    #: False when the size is part of the definition, so `--sizes` does not apply.
    scalable: bool = True


def _incremented(n: int) -> list[int]:
    return list(range(1, n + 1))


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "trivial_map",
            "one .map of a trivial task over range(N), results collected",
            sizes=(10**4, 10**5, 10**6),
            quick_sizes=(10**4, 10**5),
            expected=_incremented,
        ),
        Workload(
            "two_stage_map",
            "a .map over the futures of another .map (2N runs)",
            sizes=(10**5,),
            quick_sizes=(10**4,),
            expected=lambda n: list(range(2, n + 2)),
            task_runs=lambda n: 2 * n,
        ),
        Workload(
            "chain",
            "N single .submit calls, each taking the previous run's future",
            sizes=(10**5,),
            quick_sizes=(10**4,),
            expected=lambda n: n,
        ),
        Workload(
            "fan_in",
            "a .map of N runs whose futures go, as one list, into a single task (N+1 runs)",
            sizes=(10**5,),
            quick_sizes=(10**4,),
            expected=lambda n: n * (n + 1) // 2,
            task_runs=lambda n: n + 1,
        ),
        Workload(
            "submit_loop",
            "N single .submit calls in a loop, then wait for all, results collected",
            sizes=(10**5,),
            quick_sizes=(10**4,),
            expected=_incremented,
        ),
        Workload(
            "sleep_fanout",
            f"N tasks sleeping {NAP_SECONDS * 1000:.0f} ms on {SLEEP_FANOUT_WORKERS} workers; "
            "efficiency = ideal / actual",
            sizes=(200,),
            quick_sizes=(200,),
            expected=lambda n: list(range(n)),
            workers=SLEEP_FANOUT_WORKERS,
            ideal_seconds=lambda n: math.ceil(n / SLEEP_FANOUT_WORKERS) * NAP_SECONDS,
            scalable=False,
        ),
        Workload(
            "cpu_map",
            f"one .map of a CPU-bound task ({CRUNCH_ROUNDS:,} rounds of pure Python, about 2 ms) over "
            "range(N), on processes: ferroflow's ProcessPoolTaskRunner, ProcessPoolExecutor, Dask's and Ray's "
            "worker processes",
            sizes=(2000,),
            quick_sizes=(200,),
            expected=_crunched,
        ),
        Workload(
            "many_flows",
            "N flow runs, each calling one task directly",
            sizes=(10**4,),
            quick_sizes=(10**3,),
            expected=_incremented,
        ),
    )
}


def size_label(n: int) -> str:
    """`10^5` for a power of ten from 10^3 up (as sizes are usually chosen), else `1,500`."""
    exponent = len(str(n)) - 1
    if n >= 1000 and n == 10**exponent:
        return f"10^{exponent}"
    return f"{n:,}"
