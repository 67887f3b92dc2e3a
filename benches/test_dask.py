"""DaskTaskRunner against plain Dask on the same cluster, in the same run (issue 10). Run:
`pytest benches/test_dask.py --benchmark-only -s`; with `--benchmark-disable` each test
runs once at a small size, as a smoke check.

- A `.map` of 10^4 trivial tasks on `DaskTaskRunner(address=...)` against
  `client.map` + `client.gather` of the same function on the same LocalCluster (two
  worker processes): the median of several rounds each, alternated, and their ratio
  (the issue's target: at most 1.5).
- A two-stage map (`inc.map(inc.map(xs))`) on the runner: its intermediate results stay
  in the cluster (the second stage receives Dask futures), against the same with
  `client.map` over futures.
"""

from __future__ import annotations

import logging
import statistics
import time

import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is in the test extra; no wheel here")

from ferroflow import flow, task  # noqa: E402
from ferroflow.dask.task_runners import DaskTaskRunner  # noqa: E402

ROUNDS = 5


def inc_fn(x: int) -> int:
    return x + 1


inc = task(inc_fn, name="inc")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.WARNING
    ) as local:
        yield local


@pytest.fixture(scope="module")
def client(cluster):
    with distributed.Client(cluster, set_as_default=False) as plain:
        yield plain


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def ferroflow_map(address: str, n: int) -> list[int]:
    @flow(task_runner=DaskTaskRunner(address=address))
    def mapped() -> list[int]:
        return inc.map(range(n)).result()

    return mapped()


def ferroflow_two_stage(address: str, n: int) -> list[int]:
    @flow(task_runner=DaskTaskRunner(address=address))
    def two_stage() -> list[int]:
        return inc.map(inc.map(range(n))).result()

    return two_stage()


def dask_map(client, n: int) -> list[int]:
    return client.gather(client.map(inc_fn, range(n), pure=False))


def dask_two_stage(client, n: int) -> list[int]:
    return client.gather(client.map(inc_fn, client.map(inc_fn, range(n), pure=False), pure=False))


def compare(benchmark, ours, theirs, n: int, label: str) -> None:
    """Alternates the two, ROUNDS each after a warm-up, and prints the medians' ratio."""
    expected = theirs(n)
    assert ours(n) == expected
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(ROUNDS):
        elapsed, result = timed(theirs, n)
        assert result == expected
        theirs_times.append(elapsed)
        elapsed, result = timed(ours, n)
        assert result == expected
        ours_times.append(elapsed)
    ratio = statistics.median(ours_times) / statistics.median(theirs_times)
    print(
        f"\n{label}, n={n:,}: DaskTaskRunner median {statistics.median(ours_times):.3f} s, "
        f"plain Dask median {statistics.median(theirs_times):.3f} s, ratio {ratio:.2f}x "
        f"(rounds: ours {[round(t, 3) for t in ours_times]}, dask {[round(t, 3) for t in theirs_times]})"
    )
    benchmark.extra_info.update(ratio=ratio, ours=ours_times, dask=theirs_times)
    benchmark.pedantic(ours, args=(n,), rounds=1, iterations=1)
    return ratio


def test_map_of_trivial_tasks(benchmark, size, cluster, client):
    n = size(10_000, 200)
    address = cluster.scheduler_address
    if benchmark.disabled:
        assert benchmark.pedantic(ferroflow_map, args=(address, n), rounds=1, iterations=1) == dask_map(client, n)
        return
    ratio = compare(
        benchmark, lambda k: ferroflow_map(address, k), lambda k: dask_map(client, k), n, "map of trivial tasks"
    )
    assert ratio <= 1.5


def test_two_stage_map(benchmark, size, cluster, client):
    n = size(10_000, 200)
    address = cluster.scheduler_address
    if benchmark.disabled:
        result = benchmark.pedantic(ferroflow_two_stage, args=(address, n), rounds=1, iterations=1)
        assert result == dask_two_stage(client, n)
        return
    compare(
        benchmark,
        lambda k: ferroflow_two_stage(address, k),
        lambda k: dask_two_stage(client, k),
        n,
        "two-stage map",
    )
