"""Import paths mirror Prefect's, so ``from prefect... import X`` ports one for one."""
from __future__ import annotations

import collections.abc
import importlib
import subprocess
import sys

import pytest


def names_in(module_name: str, names: list[str]) -> list[str]:
    module = importlib.import_module(module_name)
    return [name for name in names if not hasattr(module, name)]


def test_top_level_exports():
    missing = names_in(
        "ferroflow",
        [
            "flow",
            "task",
            "Flow",
            "Task",
            "State",
            "unmapped",
            "allow_failure",
            "wait",
            "as_completed",
            "get_run_logger",
        ],
    )
    assert missing == []


def test_top_level_names_are_the_module_objects():
    import ferroflow
    import ferroflow.flows
    import ferroflow.futures
    import ferroflow.logging
    import ferroflow.states
    import ferroflow.tasks
    import ferroflow.utilities.annotations as annotations

    assert ferroflow.flow is ferroflow.flows.flow
    assert ferroflow.Flow is ferroflow.flows.Flow
    assert ferroflow.task is ferroflow.tasks.task
    assert ferroflow.Task is ferroflow.tasks.Task
    assert ferroflow.State is ferroflow.states.State
    assert ferroflow.wait is ferroflow.futures.wait
    assert ferroflow.as_completed is ferroflow.futures.as_completed
    assert ferroflow.get_run_logger is ferroflow.logging.get_run_logger
    assert ferroflow.unmapped is annotations.unmapped
    assert ferroflow.allow_failure is annotations.allow_failure


def test_futures_exports():
    missing = names_in(
        "ferroflow.futures",
        [
            "PrefectFuture",
            "PrefectFutureList",
            "PrefectConcurrentFuture",
            "DoneAndNotDoneFutures",
            "wait",
            "as_completed",
            "resolve_futures_to_states",
            "resolve_futures_to_results",
        ],
    )
    assert missing == []


def test_future_classes():
    from ferroflow.futures import PrefectConcurrentFuture, PrefectFuture, PrefectFutureList

    assert issubclass(PrefectConcurrentFuture, PrefectFuture)
    # Not a list subclass as in Prefect (a view over a map's runs): a Sequence.
    assert issubclass(PrefectFutureList, collections.abc.Sequence)


def test_task_runners_exports():
    missing = names_in(
        "ferroflow.task_runners",
        ["TaskRunner", "ThreadPoolTaskRunner", "ConcurrentTaskRunner", "SequentialTaskRunner"],
    )
    assert missing == []


def test_task_runner_classes():
    from ferroflow.task_runners import SequentialTaskRunner, TaskRunner, ThreadPoolTaskRunner

    assert issubclass(ThreadPoolTaskRunner, TaskRunner)
    assert issubclass(SequentialTaskRunner, TaskRunner)


def test_state_constructors():
    from ferroflow import states

    made = {
        name: getattr(states, name)()
        for name in (
            "Scheduled",
            "Pending",
            "Running",
            "Completed",
            "Failed",
            "Crashed",
            "Cancelling",
            "Cancelled",
            "AwaitingRetry",
            "Retrying",
            "Late",
        )
    }
    assert {name: s.name for name, s in made.items()} == {name: name for name in made}
    assert all(isinstance(s, states.State) for s in made.values())
    assert made["Retrying"].type == states.StateType.RUNNING
    assert made["AwaitingRetry"].type == states.StateType.SCHEDULED
    assert made["Late"].type == states.StateType.SCHEDULED


def test_state_constructors_for_pauses_and_slots():
    missing = names_in(
        "ferroflow.states",
        ["Paused", "Suspended", "AwaitingConcurrencySlot", "Submitting", "InfrastructurePending"],
    )
    assert missing == []


def test_state_type_members():
    from ferroflow.states import StateType

    assert {member.value for member in StateType} >= {
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "CRASHED",
        "PAUSED",
        "CANCELLING",
    }


EXCEPTIONS = {
    "PrefectException": (Exception,),
    "MappingLengthMismatch": (),
    "MappingMissingIterable": (),
    "UnfinishedRun": (),
    "UpstreamTaskError": (),
    "MissingContextError": (RuntimeError,),
    "ParameterTypeError": (),
    "ParameterBindError": (TypeError,),
    "ReservedArgumentError": (TypeError,),
    "MissingResult": (),
    # ferroflow's own: a task_run_name that fails for a run (issue 7, item 13).
    "TaskRunNameError": (ValueError,),
}


@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_exception_names(name):
    from ferroflow import exceptions

    cls = getattr(exceptions, name)
    assert issubclass(cls, exceptions.PrefectException)
    for base in EXCEPTIONS[name]:
        assert issubclass(cls, base)


def test_annotations_module():
    from ferroflow.utilities.annotations import allow_failure, opaque, quote, unmapped

    assert unmapped([1, 2])[5] == [1, 2]
    for wrapper in (allow_failure, opaque, quote, unmapped):
        assert wrapper("v").unwrap() == "v"
    assert quote("v").unquote() == "v"


def test_states_helpers():
    from ferroflow.states import format_exception, return_value_to_state

    assert format_exception(KeyError("k")) == "KeyError: 'k'"
    assert return_value_to_state(3).is_completed()


def test_utilities_callables_module():
    from ferroflow.utilities.callables import bind_method, copy_metadata, rewrap_method, unwrap_method

    assert all(callable(f) for f in (bind_method, copy_metadata, rewrap_method, unwrap_method))


def test_logging_module():
    from ferroflow.logging import get_run_logger

    assert callable(get_run_logger)


def test_tasks_module_helpers():
    from ferroflow.tasks import Task, exponential_backoff, task

    assert exponential_backoff(backoff_factor=3)(2) == [3, 6]
    assert isinstance(task(lambda: 1), Task)


def test_flows_module():
    from ferroflow.flows import Flow, flow

    def one():
        return 1

    assert isinstance(flow(one), Flow)


def test_submitted_future_is_a_prefect_future():
    from ferroflow import flow, task
    from ferroflow.futures import PrefectConcurrentFuture, PrefectFuture

    @task
    def one():
        return 1

    box = {}

    @flow
    def f():
        fut = one.submit()
        box["checks"] = (isinstance(fut, PrefectFuture), isinstance(fut, PrefectConcurrentFuture))

    f()
    assert box["checks"] == (True, True)


# Modules a plain `import ferroflow` must not load: each costs milliseconds at start-up
# and is needed only by a feature that imports it when used.
NOT_LOADED_AT_IMPORT = (
    "asyncio", "anyio", "ctypes", "cloudpickle", "copy", "dis", "hashlib", "inspect", "json",
    "pickle", "platform", "pydantic", "rich", "signal", "uuid",
    "ferroflow._runtime", "ferroflow._timeouts", "ferroflow._task_cache", "ferroflow.runtime",
    # The cluster runners' engines: loaded only when `ferroflow.dask` / `ferroflow.ray`
    # (or `ferroflow.task_runners.DaskTaskRunner` / `RayTaskRunner`) is asked for.
    "dask", "distributed", "ray", "ferroflow.dask", "ferroflow.ray", "ferroflow._remote",
)


@pytest.mark.parametrize("module", ["ferroflow", "ferroflow.task_runners", "ferroflow.executors"])
def test_import_ferroflow_loads_only_what_every_flow_needs(module):
    script = f"import sys, {module}; print([m for m in {NOT_LOADED_AT_IMPORT!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
