"""ferroflow on Dask, under prefect-dask's names: `DaskTaskRunner`, `get_dask_client`,
`get_async_dask_client` (`pip install "ferroflow[dask]"`).

`from prefect_dask import DaskTaskRunner, get_dask_client` becomes
`from ferroflow.dask import DaskTaskRunner, get_dask_client`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Generator
from datetime import timedelta
from typing import Any

from ferroflow.dask.task_runners import DaskTaskRunner

__all__ = ["DaskTaskRunner", "get_async_dask_client", "get_dask_client"]


def _client_kwargs(asynchronous: bool, timeout: int | float | str | timedelta | None, **given: Any) -> dict[str, Any]:
    """The client's arguments: in a task run on a Dask worker, that worker's scheduler;
    in a flow run on a `DaskTaskRunner`, the runner's scheduler and `client_kwargs`;
    elsewhere, none (a client then starts a local cluster of its own)."""
    from ferroflow.context import FlowRunContext, TaskRunContext
    from ferroflow.dask._runs import in_dask_worker, scheduler_address, worker_client

    kwargs: dict[str, Any] = {}
    address: str | None = None
    task_run = TaskRunContext.get()
    flow_run = FlowRunContext.get()
    if task_run is not None and in_dask_worker():
        address = scheduler_address(worker_client())
    elif flow_run is not None and isinstance(flow_run.task_runner, DaskTaskRunner) and flow_run.task_runner.client:
        runner = flow_run.task_runner
        kwargs.update(runner.client_kwargs)
        address = scheduler_address(runner.client)
    kwargs["address"] = address
    kwargs["asynchronous"] = asynchronous
    if timeout is not None:
        kwargs["timeout"] = timeout
    kwargs.update(given)
    return kwargs


@contextlib.contextmanager
def get_dask_client(timeout: int | float | str | timedelta | None = None, **client_kwargs: Any) -> Generator[Any]:
    """A temporary synchronous `distributed.Client` of the cluster the code runs on (see
    prefect-dask's `get_dask_client`), to compute Dask collections inside a task or flow.
    `client_kwargs` go to the client and override the runner's."""
    from ferroflow.dask._runs import new_client

    with new_client(**_client_kwargs(False, timeout, **client_kwargs)) as client:
        yield client


@contextlib.asynccontextmanager
async def get_async_dask_client(
    timeout: int | float | str | timedelta | None = None, **client_kwargs: Any
) -> AsyncGenerator[Any]:
    """The asynchronous `get_dask_client`, for async tasks and flows."""
    from ferroflow.dask._runs import new_client

    async with new_client(**_client_kwargs(True, timeout, **client_kwargs)) as client:
        yield client
