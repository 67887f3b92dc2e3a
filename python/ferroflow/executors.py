"""Prefect 2's early names for task runners, as its docs (seed 001) use them:
`@flow(executor=DaskExecutor())`. Each executor stands for the task runner Prefect
renamed it to; `@flow(executor=...)` runs the flow on that runner, with a
`DeprecationWarning` that names `task_runner=`.

- `DaskExecutor(address=None, cluster_class=None, cluster_kwargs=None, adapt_kwargs=None,
  client_kwargs=None)`: `DaskTaskRunner` with the same arguments;
- `LocalDaskExecutor(scheduler="threads", num_workers=None)`: `ThreadPoolTaskRunner`
  (`"processes"`: `ProcessPoolTaskRunner`; `"synchronous"`: `SequentialTaskRunner`), with
  `num_workers` as its `max_workers`;
- `SequentialExecutor()`, `LocalExecutor()`: `SequentialTaskRunner`.

Importing this module never imports Dask: `DaskExecutor` makes its runner (and imports
`ferroflow.dask`) only when a flow takes it.
"""

from __future__ import annotations

import abc
import warnings
from typing import Any

from ferroflow._task_runners import (
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
)

__all__ = ["BaseExecutor", "DaskExecutor", "LocalDaskExecutor", "LocalExecutor", "SequentialExecutor"]


class BaseExecutor(abc.ABC):
    """A Prefect 2 executor: the configuration of a task runner."""

    @abc.abstractmethod
    def task_runner(self) -> TaskRunner[Any]:
        """The task runner this executor stands for, made anew."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in vars(self).items() if value is not None)
        return f"{type(self).__name__}({settings})"


class DaskExecutor(BaseExecutor):
    """Runs task runs on a Dask cluster: `DaskTaskRunner` with these arguments (a
    temporary `LocalCluster` by default, or the scheduler at `address`)."""

    def __init__(
        self,
        address: str | None = None,
        cluster_class: Any = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.cluster_class = cluster_class
        self.cluster_kwargs = cluster_kwargs
        self.adapt_kwargs = adapt_kwargs
        self.client_kwargs = client_kwargs

    def task_runner(self) -> TaskRunner[Any]:
        from ferroflow.dask.task_runners import DaskTaskRunner

        return DaskTaskRunner(
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
        )


class LocalDaskExecutor(BaseExecutor):
    """Runs task runs in this machine's threads or processes, as Dask's local schedulers
    did: `scheduler` is `"threads"` (a thread pool), `"processes"` (a process pool) or
    `"synchronous"` (one at a time); `num_workers` bounds the pool."""

    _SCHEDULERS = ("threads", "processes", "synchronous")

    def __init__(self, scheduler: str = "threads", num_workers: int | None = None) -> None:
        if scheduler not in self._SCHEDULERS:
            raise ValueError(f"LocalDaskExecutor: scheduler must be one of {self._SCHEDULERS}, got {scheduler!r}")
        self.scheduler = scheduler
        self.num_workers = num_workers

    def task_runner(self) -> TaskRunner[Any]:
        if self.scheduler == "processes":
            return ProcessPoolTaskRunner(max_workers=self.num_workers)
        if self.scheduler == "synchronous":
            return SequentialTaskRunner()
        return ThreadPoolTaskRunner(max_workers=self.num_workers)


class SequentialExecutor(BaseExecutor):
    """Runs each task run at once, in the flow's thread, in order: `SequentialTaskRunner`."""

    def task_runner(self) -> TaskRunner[Any]:
        return SequentialTaskRunner()


class LocalExecutor(SequentialExecutor):
    """Prefect 1's name for the sequential executor."""


def task_runner_for(executor: Any, task_runner: Any, owner: str, stacklevel: int) -> Any:
    """The task runner of a flow given `executor=` (with the DeprecationWarning, at
    `stacklevel` above the caller), or `task_runner` when no executor is given."""
    if executor is None:
        return task_runner
    if task_runner is not None:
        raise TypeError(f"{owner}: give task_runner= or executor= (its Prefect 2 name), not both")
    if isinstance(executor, type) and issubclass(executor, BaseExecutor):
        executor = executor()
    if not isinstance(executor, BaseExecutor):
        raise TypeError(f"{owner}: executor must be one of ferroflow.executors' executors, got {executor!r}")
    runner = executor.task_runner()
    warnings.warn(
        f"{owner}: executor= is Prefect 2's early name; use task_runner={type(runner).__name__}(...) "
        f"(here {type(executor).__name__} runs the flow on {type(runner).__name__})",
        DeprecationWarning,
        stacklevel=stacklevel + 1,
    )
    return runner
