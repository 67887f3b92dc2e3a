"""The workloads as a Prefect user writes them, run by ferroflow and by Prefect itself.

The code is the same for both: only the import root differs, since ferroflow mirrors
Prefect's module paths (`flow`, `task`, `.futures.wait`, `.task_runners`). That is the
promise being measured. Every flow is given `ThreadPoolTaskRunner(max_workers=workers)`;
with `workers=None` that is either library's default runner, as with a bare `@flow`. The
CPU-bound map gets `ProcessPoolTaskRunner(max_workers=workers)` (one worker per CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from contextlib import contextmanager
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from ..workloads import crunch, inc, nap, total


def define_flows(root: str, workers: int | None) -> SimpleNamespace:
    """The workloads' flows, written with the API imported from `root`."""
    api = import_module(root)
    # Either library's `flow`, typed as the decorator factory it is (the module is found
    # at run time, so its own annotations are not seen here).
    flow: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]] = api.flow
    task = api.task
    wait = import_module(f"{root}.futures").wait
    task_runners = import_module(f"{root}.task_runners")
    runner = task_runners.ThreadPoolTaskRunner(max_workers=workers)
    inc_task, total_task, nap_task, crunch_task = task(inc), task(total), task(nap), task(crunch)

    # The results are annotated: `task` is found at run time, so they are untyped here.
    @flow(task_runner=runner)
    def trivial_map(n: int) -> list[int]:
        results: list[int] = inc_task.map(range(n)).result()
        return results

    @flow(task_runner=runner)
    def two_stage_map(n: int) -> list[int]:
        results: list[int] = inc_task.map(inc_task.map(range(n))).result()
        return results

    @flow(task_runner=runner)
    def chain(n: int) -> int:
        future = inc_task.submit(0)
        for _ in range(n - 1):
            future = inc_task.submit(future)
        result: int = future.result()
        return result

    @flow(task_runner=runner)
    def fan_in(n: int) -> int:
        result: int = total_task.submit(inc_task.map(range(n))).result()
        return result

    @flow(task_runner=runner)
    def submit_loop(n: int) -> list[int]:
        futures = [inc_task.submit(x) for x in range(n)]
        wait(futures)
        return [future.result() for future in futures]

    @flow(task_runner=runner)
    def sleep_fanout(n: int) -> list[int]:
        results: list[int] = nap_task.map(range(n)).result()
        return results

    def cpu_map(n: int) -> list[int]:
        # The benchmark's child loads this package under a private name (`measure.py`)
        # that worker processes cannot import: its task bodies travel by value.
        import sys

        import cloudpickle  # type: ignore[import-untyped]  # pyright: ignore[reportMissingTypeStubs]

        cloudpickle.register_pickle_by_value(sys.modules[crunch.__module__])  # pyright: ignore[reportUnknownMemberType]

        # Its runner is made when it runs: Prefect before 3.4.14 has no process pool.
        @flow(task_runner=task_runners.ProcessPoolTaskRunner(max_workers=workers))
        def cpu_map(n: int) -> list[int]:
            results: list[int] = crunch_task.map(range(n)).result()
            return results

        mapped: list[int] = cpu_map(n)
        return mapped

    @flow(task_runner=runner)
    def one_task(x: int) -> int:
        result: int = inc_task(x)
        return result

    def many_flows(n: int) -> list[int]:
        return [one_task(x) for x in range(n)]

    return SimpleNamespace(
        trivial_map=trivial_map,
        two_stage_map=two_stage_map,
        chain=chain,
        fan_in=fan_in,
        submit_loop=submit_loop,
        sleep_fanout=sleep_fanout,
        cpu_map=cpu_map,
        many_flows=many_flows,
    )


@contextmanager
def ferroflow_session(workers: int | None) -> Generator[SimpleNamespace, None, None]:
    yield define_flows("ferroflow", workers)


@contextmanager
def prefect_session(workers: int | None) -> Generator[SimpleNamespace, None, None]:
    flows = define_flows("prefect", workers)
    flows.many_flows(1)  # starts Prefect's temporary API server (seconds), before the timing
    yield flows
