"""Async maps (issue 4): a `.map` of 10^5 trivial async tasks (`async def inc(x): return
x + 1`) inside a sync flow and inside an async flow, each at most 3x the same `.map` of
the sync task measured in the same run. Prefect 3 runs every submitted async task in
its own `asyncio.run()` on a pool thread: 35 s for 10^3 of them (reference, section 5).

Also measured, without a bound: a map of 10^4 async tasks that do suspend
(`await asyncio.sleep(0)`), which run as asyncio tasks on the flow run's event loop;
its cost per task is printed.

Run: `pytest benches/test_async_map.py --benchmark-only -s`. The ratio tests measure
interleaved, round by round, and compare medians of 3; they run only when benchmarks
are enabled, never as timed unit tests. With `--benchmark-disable` (as CI runs the
benches) each benchmark runs once at a small size, a smoke check of the results.
"""

import asyncio
import statistics
import time

import pytest

from ferroflow import flow, task

FULL = 10**5
SUSPENDING_FULL = 10**4
ROUNDS = 3
MAX_RATIO = 3.0


@task
def inc(x: int) -> int:
    return x + 1


@task(name="inc")
async def ainc(x: int) -> int:
    return x + 1


@task(name="inc")
async def asleep_inc(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


@flow
def sync_flow(mapped, n: int) -> list[int]:
    return mapped.map(range(n)).result()


@flow
async def async_flow(mapped, n: int) -> list[int]:
    return await mapped.map(range(n))


def in_sync_flow(mapped, n: int) -> list[int]:
    return sync_flow(mapped, n)


def in_async_flow(mapped, n: int) -> list[int]:
    return asyncio.run(async_flow(mapped, n))


CASES = {
    "sync_task-sync_flow": (in_sync_flow, inc),
    "async_task-sync_flow": (in_sync_flow, ainc),
    "sync_task-async_flow": (in_async_flow, inc),
    "async_task-async_flow": (in_async_flow, ainc),
}


@pytest.mark.parametrize("case", CASES)
def test_map(benchmark, size, case):
    n = size(FULL)
    runner, mapped = CASES[case]
    benchmark.group = f"async map N={n}"
    result = benchmark.pedantic(runner, args=(mapped, n), rounds=ROUNDS, iterations=1)
    assert result == list(range(1, n + 1))


@pytest.mark.parametrize("runner", [in_sync_flow, in_async_flow], ids=["sync_flow", "async_flow"])
def test_suspending_map(benchmark, size, runner):
    n = size(SUSPENDING_FULL)
    benchmark.group = f"suspending async map N={n}"
    result = benchmark.pedantic(runner, args=(asleep_inc, n), rounds=ROUNDS, iterations=1)
    assert result == list(range(1, n + 1))


def _timed(runner, mapped, n: int) -> float:
    started = time.perf_counter()
    result = runner(mapped, n)
    elapsed = time.perf_counter() - started
    assert len(result) == n and result[-1] == n
    return elapsed


def test_async_map_ratios(benchmark):
    if benchmark.disabled:
        pytest.skip("measures only with benchmarks enabled (--benchmark-only)")
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for _ in range(ROUNDS):  # interleaved, so every case sees the same machine noise
        for case, (runner, mapped) in CASES.items():
            times[case].append(_timed(runner, mapped, FULL))
    medians = {case: statistics.median(values) for case, values in times.items()}
    baseline = medians["sync_task-sync_flow"]
    ratios = {
        # async tasks against sync tasks, in the same kind of flow
        "sync flow: async/sync tasks": medians["async_task-sync_flow"] / baseline,
        "async flow: async/sync tasks": medians["async_task-async_flow"] / medians["sync_task-async_flow"],
        # the async flow's map against the plain sync map in a sync flow
        "async tasks in async flow / sync tasks in sync flow": medians["async_task-async_flow"] / baseline,
    }
    benchmark.extra_info.update({f"{case}_s": value for case, value in medians.items()})
    benchmark.extra_info.update(ratios)
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n.map of {FULL:,} trivial tasks, medians of {ROUNDS} interleaved rounds:")
    for case, value in medians.items():
        print(f"  {case:<24} {value:.3f} s  ({value / FULL * 1e6:.2f} µs per task)")
    for name, ratio in ratios.items():
        print(f"  ratio {name}: {ratio:.2f}x")
    for name, ratio in ratios.items():
        assert ratio <= MAX_RATIO, f"{name}: {ratio:.2f}x > {MAX_RATIO}x ({medians})"


def test_suspending_map_cost(benchmark):
    if benchmark.disabled:
        pytest.skip("measures only with benchmarks enabled (--benchmark-only)")
    times: dict[str, list[float]] = {"sync_flow": [], "async_flow": []}
    for _ in range(ROUNDS):
        times["sync_flow"].append(_timed(in_sync_flow, asleep_inc, SUSPENDING_FULL))
        times["async_flow"].append(_timed(in_async_flow, asleep_inc, SUSPENDING_FULL))
    medians = {case: statistics.median(values) for case, values in times.items()}
    benchmark.extra_info.update({f"{case}_s": value for case, value in medians.items()})
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\n.map of {SUSPENDING_FULL:,} async tasks that suspend (await asyncio.sleep(0)), medians of {ROUNDS}:")
    for case, value in medians.items():
        print(f"  in a {case.replace('_', ' ')}: {value:.3f} s ({value / SUSPENDING_FULL * 1e6:.1f} µs per task)")
