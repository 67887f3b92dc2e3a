"""A CPU-bound map on ProcessPoolTaskRunner against the plain loop (scripts/main.sh runs it).

Each task burns about 2 ms of pure-Python CPU; the map runs once on a fresh runner
(workers spawn on the way) and once more on the warm workers, as a flow run of the same
flow would. Prints both times and their speedups over the plain loop.

Usage: python scripts/process_pool_speedup.py [RUNS]   (default 2000)
"""

from __future__ import annotations

import os
import sys
import time

from ferroflow import flow, task
from ferroflow.task_runners import ProcessPoolTaskRunner


def burn(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def rounds_for(seconds: float) -> int:
    """How many rounds of `burn` take about `seconds` here."""
    rounds = 1000
    while True:
        started = time.perf_counter()
        burn(rounds)
        elapsed = time.perf_counter() - started
        if elapsed > 0.02:
            return max(1, int(rounds * seconds / elapsed))
        rounds *= 2


burn_task = task(burn, name="burn")


@flow(task_runner=ProcessPoolTaskRunner())
def cpu_map(rounds: list[int]) -> list[int]:
    return burn_task.map(rounds).result()


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = [rounds_for(0.002)] * runs
    started = time.perf_counter()
    expected = [burn(r) for r in rounds]
    plain = time.perf_counter() - started
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        assert cpu_map(rounds) == expected
        timings.append(time.perf_counter() - started)
    cold, warm = timings
    workers = ProcessPoolTaskRunner().max_workers
    print(
        f"CPU-bound map of {runs} tasks of {plain / runs * 1000:.2f} ms on {workers} worker processes "
        f"({os.cpu_count()} CPUs): plain loop {plain:.2f} s; ProcessPoolTaskRunner {cold:.2f} s "
        f"({plain / cold:.2f}x) on a fresh runner, {warm:.2f} s ({plain / warm:.2f}x) on warm workers"
    )


if __name__ == "__main__":
    main()
