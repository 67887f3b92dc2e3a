"""Task runners: where submitted task runs execute (Prefect's `prefect.task_runners`).

`ThreadPoolTaskRunner` (the default; `ConcurrentTaskRunner` is its Prefect 2 name) runs
them on native worker threads of ferroflow's engine; `SequentialTaskRunner` (Prefect 2's,
dropped by Prefect 3) runs each at once in the submitting thread, in order;
`ProcessPoolTaskRunner` runs them in worker processes. `DaskTaskRunner` and
`RayTaskRunner` are here too, as in `ferroflow.dask` and `ferroflow.ray`: their modules
(and Dask or Ray) load only when one of them is asked for.

The runners are defined in `ferroflow._task_runners`, which the cluster runners build
on: this module only names them, so nothing below it imports it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ferroflow._task_runners import (
    ConcurrentTaskRunner,
    ProcessPoolTaskRunner,
    SequentialTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
)

if TYPE_CHECKING:
    from ferroflow.dask.task_runners import DaskTaskRunner as DaskTaskRunner
    from ferroflow.ray.task_runners import RayTaskRunner as RayTaskRunner

# (`DaskTaskRunner` and `RayTaskRunner` are attributes too, loaded when asked for: not in
# `__all__`, so that `from ferroflow.task_runners import *` imports neither Dask nor Ray.)
__all__ = [
    "ConcurrentTaskRunner",
    "ProcessPoolTaskRunner",
    "SequentialTaskRunner",
    "TaskRunner",
    "ThreadPoolTaskRunner",
]

# The runners' public home, as their names, reprs and pickles show it.
for _runner in (TaskRunner, ThreadPoolTaskRunner, SequentialTaskRunner, ProcessPoolTaskRunner):
    _runner.__module__ = __name__

#: The cluster runners, importable from here as from `ferroflow.dask` / `ferroflow.ray`.
_CLUSTER_RUNNERS = {
    "DaskTaskRunner": "ferroflow.dask.task_runners",
    "RayTaskRunner": "ferroflow.ray.task_runners",
}


def __getattr__(name: str) -> Any:
    module = _CLUSTER_RUNNERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
