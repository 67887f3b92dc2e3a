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

import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is in the test extra; no wheel here")

from timing import interleaved  # noqa: E402

from ferroflow import flow, task  # noqa: E402
from ferroflow.dask.task_runners import DaskTaskRunner  # noqa: E402

#: What `interleaved` calls the two systems.
NAMES = ("DaskTaskRunner", "plain Dask")


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



def test_map_of_trivial_tasks(benchmark, size, cluster, client):
    n = size(10_000, 200)
    address = cluster.scheduler_address
    if benchmark.disabled:
        assert benchmark.pedantic(ferroflow_map, args=(address, n), rounds=1, iterations=1) == dask_map(client, n)
        return
    ratio = interleaved(
        benchmark, lambda k: ferroflow_map(address, k), lambda k: dask_map(client, k), n, "map of trivial tasks", NAMES
    )
    assert ratio <= 1.5


def test_two_stage_map(benchmark, size, cluster, client):
    n = size(10_000, 200)
    address = cluster.scheduler_address
    if benchmark.disabled:
        result = benchmark.pedantic(ferroflow_two_stage, args=(address, n), rounds=1, iterations=1)
        assert result == dask_two_stage(client, n)
        return
    interleaved(
        benchmark,
        lambda k: ferroflow_two_stage(address, k),
        lambda k: dask_two_stage(client, k),
        n,
        "two-stage map",
        NAMES,
    )
