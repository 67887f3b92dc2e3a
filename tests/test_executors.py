"""Prefect 2's executor names (seed 001): `@flow(executor=...)` runs the flow on the task
runner each stands for, with a DeprecationWarning that names `task_runner=`."""

from __future__ import annotations

import warnings

import pytest

from ferroflow import flow, task
from ferroflow.executors import DaskExecutor, LocalDaskExecutor, LocalExecutor, SequentialExecutor
from ferroflow.flows import Flow
from ferroflow.task_runners import ProcessPoolTaskRunner, SequentialTaskRunner, ThreadPoolTaskRunner


@task
def double(x):
    return 2 * x


@pytest.mark.parametrize(
    ("executor", "runner_type"),
    [
        (SequentialExecutor(), SequentialTaskRunner),
        (LocalExecutor(), SequentialTaskRunner),
        (LocalDaskExecutor(), ThreadPoolTaskRunner),
        (LocalDaskExecutor(scheduler="processes", num_workers=2), ProcessPoolTaskRunner),
        (LocalDaskExecutor(scheduler="synchronous"), SequentialTaskRunner),
    ],
)
def test_each_executor_runs_the_flow_on_its_task_runner(executor, runner_type):
    with pytest.warns(DeprecationWarning, match=r"task_runner="):

        @flow(executor=executor)
        def doubled(values):
            return double.map(values).result()

    assert type(doubled.task_runner) is runner_type
    if runner_type is not ProcessPoolTaskRunner:  # (its workers would import this module by spawn)
        assert doubled([1, 2]) == [2, 4]


def test_the_warning_points_at_the_users_line():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        @flow(executor=SequentialExecutor)  # the class works too
        def flow_here():
            return 1

    (warning,) = [w for w in caught if issubclass(w.category, DeprecationWarning)]
    assert warning.filename == __file__
    assert "SequentialTaskRunner" in str(warning.message)
    assert type(flow_here.task_runner) is SequentialTaskRunner


def test_the_flow_class_takes_executor_too():
    with pytest.warns(DeprecationWarning) as caught:
        made = Flow(lambda: 1, name="made", executor=LocalExecutor())
    assert caught[0].filename == __file__
    assert type(made.task_runner) is SequentialTaskRunner


def test_dask_executor_stands_for_dask_task_runner():
    from ferroflow.dask.task_runners import DaskTaskRunner

    executor = DaskExecutor(cluster_kwargs={"n_workers": 1})
    assert executor.task_runner() == DaskTaskRunner(cluster_kwargs={"n_workers": 1})
    assert DaskExecutor(address="tcp://127.0.0.1:8786").task_runner().address == "tcp://127.0.0.1:8786"


def test_misuse_is_refused():
    with pytest.raises(TypeError, match="not both"):
        flow(executor=SequentialExecutor(), task_runner=ThreadPoolTaskRunner())
    with pytest.raises(TypeError, match="executor must be"):
        flow(executor="dask")
    with pytest.raises(ValueError, match="scheduler"):
        LocalDaskExecutor(scheduler="cluster")


def test_importing_executors_does_not_import_dask(run_script):
    proc = run_script(
        """
        import sys
        import ferroflow.executors
        assert not any(name == "dask" or name.startswith(("dask.", "distributed")) for name in sys.modules), sorted(
            name for name in sys.modules if "dask" in name or "distributed" in name
        )
        """
    )
    assert proc.returncode == 0, proc.stderr
