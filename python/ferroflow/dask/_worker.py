"""What executes in a Dask worker for each task run (imported there by Dask, by name)."""

from __future__ import annotations

import pickle
from typing import Any

from ferroflow._worker_runs import (
    PROTOCOL,
    RAISED,
    RETURNED_STATE,
    FlowRunIdentity,
    run_in_cluster_worker,
)


class ReturnedState(Exception):
    """Carries a State the task returned to the flow's process, where the engine reads
    what it means (a failed State fails the run, a cache hit is Cached): raised, so the
    run's Dask result is never a State."""

    def __init__(self, state: Any) -> None:
        super().__init__(state)
        self.state = state


def task_definition(key: str, blob: bytes) -> tuple[str, bytes]:
    """A task's definition as a Dask result that every run of the task depends on: the
    scheduler computes it again if the worker that held it dies (scattered data would be
    lost with it)."""
    return key, blob


def run_task(
    identity: tuple[str, int, bytes],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    *,
    definition: tuple[str, bytes],
    flow_run: FlowRunIdentity | None,
    flow_pid: int,
    topic: str,
    starts_topic: str | None,
) -> Any:
    """One attempt of a task run: returns its value (which stays in the cluster) or
    raises its exception. Its log records go to the flow's client as an event on `topic`,
    before the attempt ends, so its lines come before its `Finished in state` line. A run
    under a time limit says on `starts_topic` that it started (its key)."""
    from ferroflow._task_runners import ThreadPoolTaskRunner

    if starts_topic is not None:
        import distributed

        worker = distributed.get_worker()
        worker.log_event(starts_topic, worker.get_current_task())

    kind, data, records = run_in_cluster_worker(
        definition, flow_run, identity, args, kwargs, flow_pid, ThreadPoolTaskRunner
    )
    if records:
        import distributed

        distributed.get_worker().log_event(topic, pickle.dumps(records, PROTOCOL))
    if kind == RAISED:
        raise data
    if kind == RETURNED_STATE:
        raise ReturnedState(data)
    return data
