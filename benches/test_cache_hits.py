"""Cache hits (issue 8, item 1): a `.map` of 10^4 runs of a cached task that all hit
costs at most 50 µs per run on local disk. Prefect's per-task overhead is milliseconds.

The records are written once (a map that misses), then the same map is measured: every
run computes its key (`INPUTS`: the arguments hashed), finds its record file, checks it
and unpickles it, and ends `Cached`. A process keeps the last 1,000 records it decoded in
memory (checked against the file before use), so a map of 10^4 keys reads almost all of
them from disk. A plain `.map` of the same size is measured beside it.

Run: `pytest benches/test_cache_hits.py --benchmark-only`. The budget test measures hits
and the plain map interleaved, round by round, and compares the median with 50 µs; it
runs only when benchmarks are enabled, never as a timed unit test.
"""

import statistics
import time

import pytest

from ferroflow import flow, task
from ferroflow.cache_policies import INPUTS

FULL = 10**4
#: The issue's ceiling on one hit, in seconds.
BUDGET = 50e-6


def square_fn(x: int) -> int:
    return x * x


plain_square = task(square_fn, name="plain_square")


def cached_square(folder: str):
    return task(square_fn, name="cached_square", cache_policy=INPUTS, result_storage=folder)


@flow
def map_in_flow(t, n: int) -> list[int]:
    futures = t.map(range(n))
    return futures.result()


def warmed(tmp_path, n: int):
    """The cached task, with a record for each of its `n` inputs already written."""
    cached = cached_square(str(tmp_path / "records"))
    assert map_in_flow(cached, n) == [x * x for x in range(n)]
    return cached


def test_cache_hit_map(benchmark, size, tmp_path):
    n = size(FULL, 200)
    cached = warmed(tmp_path, n)
    result = benchmark.pedantic(map_in_flow, args=(cached, n), rounds=5, iterations=1)
    assert result == [x * x for x in range(n)]


def test_plain_map_of_the_same_size(benchmark, size):
    n = size(FULL, 200)
    result = benchmark.pedantic(map_in_flow, args=(plain_square, n), rounds=5, iterations=1)
    assert result == [x * x for x in range(n)]


def test_cache_hits_within_budget(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("measures only with benchmarks enabled (--benchmark-only)")
    cached = warmed(tmp_path, FULL)
    hits, plain = [], []
    for _ in range(7):  # interleaved, so both see the same machine noise
        started = time.perf_counter()
        map_in_flow(cached, FULL)
        hits.append((time.perf_counter() - started) / FULL)
        started = time.perf_counter()
        map_in_flow(plain_square, FULL)
        plain.append((time.perf_counter() - started) / FULL)
    per_hit = statistics.median(hits)
    print(
        f"\ncache hit: median {per_hit * 1e6:.1f} µs per run (min {min(hits) * 1e6:.1f}, max {max(hits) * 1e6:.1f}); "
        f"plain .map: {statistics.median(plain) * 1e6:.2f} µs per run; {FULL} runs, 7 rounds"
    )
    assert per_hit <= BUDGET, f"{per_hit * 1e6:.1f} µs per hit, over the {BUDGET * 1e6:.0f} µs budget"
