"""Behaviour test_dask and test_ray check alike on their cluster: each imports these
tests, which pytest then collects as its own, and gives the runner they use as its
`cluster_runner` fixture (a DaskTaskRunner on the module's cluster; a RayTaskRunner on
the connected Ray). The name does not start with `test_`: pytest collects these only
where they are imported.
"""

from __future__ import annotations

import os

import pytest

from cluster_tasks import dies_once, killing_when_written, poison
from ferroflow import flow, task


def test_the_value_comes_when_asked_for(cluster_runner):
    """`.result()` fetches the value: here, the poisoned one raises as it arrives."""
    parent = os.getpid()

    @flow(task_runner=cluster_runner)
    def asks():
        return poison.submit(parent, 1).result()

    with pytest.raises(RuntimeError, match="unpickled in the flow's process"):
        asks()


def test_caching_works_across_flow_runs_on_the_cluster(cluster_runner, tmp_path):
    """The cache is read and written in the worker; a hit (a State the worker returns)
    ends the run Cached with the cached value."""
    from ferroflow.cache_policies import INPUTS
    from ferroflow.filesystems import LocalFileSystem

    calls = tmp_path / "calls"

    @task(cache_policy=INPUTS, result_storage=LocalFileSystem(basepath=str(tmp_path / "results")))
    def expensive(x):
        with open(calls, "a") as file:
            file.write("x")
        return x * 3

    @flow(task_runner=cluster_runner)
    def cached():
        future = expensive.submit(5)
        return future.result(), future.state.name

    assert cached() == (15, "Completed")
    assert cached() == (15, "Cached")
    assert calls.read_text() == "x"


def test_a_run_whose_worker_dies_is_retried_when_its_task_has_retries(cluster_runner, tmp_path):
    pid_file = tmp_path / "pid"

    @flow(task_runner=cluster_runner)
    def survives():
        return dies_once.submit(str(pid_file)).result()

    with killing_when_written(pid_file):
        assert survives() == "second attempt"
