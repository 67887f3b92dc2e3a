"""The first performance floor (foundation issue): inside a flow, `inc.map(range(10**6))
.result()` is correct, at least 5x faster than `ThreadPoolExecutor().map(inc, ...)`
measured in the same run, and peaks under 1 GiB of RSS.

Run: `pytest benches/test_map_floor.py --benchmark-only`. The ratio test measures both
systems interleaved, round by round, and compares medians; it runs only when
benchmarks are enabled, never as a timed unit test.
"""

import statistics
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ferroflow import flow, task

FULL = 10**6


def inc_fn(x: int) -> int:
    return x + 1


inc = task(inc_fn, name="inc")


@flow
def map_in_flow(n: int) -> list[int]:
    return inc.map(range(n)).result()


def threadpool_map(n: int) -> list[int]:
    with ThreadPoolExecutor() as pool:
        return list(pool.map(inc_fn, range(n)))


def test_ferroflow_map(benchmark, size):
    n = size(FULL)
    result = benchmark.pedantic(map_in_flow, args=(n,), rounds=3, iterations=1)
    assert result == list(range(1, n + 1))


def test_threadpool_executor_map(benchmark, size):
    n = size(FULL)
    result = benchmark.pedantic(threadpool_map, args=(n,), rounds=3, iterations=1)
    assert result == list(range(1, n + 1))


def _peak_rss_mib(code: str) -> float:
    """Peak RSS of a fresh interpreter running `code`. Read from /proc's VmHWM: the
    `ru_maxrss` of getrusage survives exec, so it would report this pytest's peak."""
    probe = code + "\nprint(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"FERROFLOW_LOGGING_LEVEL": "WARNING", "PATH": ""},
    )
    return int(out.stdout.split()[-1]) / 1024


def test_floor_ratio_and_memory(benchmark):
    if benchmark.disabled:
        pytest.skip("measures only with benchmarks enabled (--benchmark-only)")
    ours, theirs = [], []
    for _ in range(3):  # interleaved, so both see the same machine noise
        started = time.perf_counter()
        assert len(map_in_flow(FULL)) == FULL
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert len(threadpool_map(FULL)) == FULL
        theirs.append(time.perf_counter() - started)
    ratio = statistics.median(theirs) / statistics.median(ours)
    peak = _peak_rss_mib(
        textwrap.dedent(
            f"""
            from ferroflow import flow, task
            @task
            def inc(x): return x + 1
            @flow
            def f(n): return len(inc.map(range(n)).result())
            assert f({FULL}) == {FULL}
            """
        )
    )
    benchmark.extra_info.update(
        ferroflow_s=statistics.median(ours), threadpool_s=statistics.median(theirs), ratio=ratio, peak_rss_mib=peak
    )
    benchmark.pedantic(lambda: None, rounds=1)
    print(
        f"\nferroflow {statistics.median(ours):.3f}s, ThreadPoolExecutor {statistics.median(theirs):.3f}s: "
        f"{ratio:.1f}x; peak RSS {peak:.0f} MiB"
    )
    assert ratio >= 5, f"ferroflow is only {ratio:.1f}x faster than ThreadPoolExecutor.map"
    assert peak < 1024, f"peak RSS {peak:.0f} MiB"
