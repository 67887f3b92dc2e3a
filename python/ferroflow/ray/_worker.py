"""What executes in a Ray worker for each task run (the remote function `task_function`
makes for a task, with two returns).

A run's two returns travel apart: the first, its value, stays in the cluster (a
downstream run there receives its ObjectRef); the second, its *report*, is small and
comes to the flow's process, whose callback reads it: how the attempt ended (returned,
raised with its exception, or returned a State the engine must read) and the log
records the run made, emitted there before the run's end is reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ferroflow._worker_runs import (
    RAISED,
    RETURNED,
    RETURNED_STATE,
    FlowRunIdentity,
    describe,
    run_in_cluster_worker,
)

#: A run's report: `[RETURNED | RAISED | RETURNED_STATE, detail, its log records]`; detail
#: is None (the value is the first return), `describe(exception)`, or the State. A list:
#: Ray serializes lists of plain values with msgpack, and falls back to pickle for tuples.
Report = list[Any]

#: The containers a nested ObjectRef is looked for in (as Prefect walks a run's arguments).
CONTAINERS = (list, tuple, dict, set, frozenset)

#: What every run of a task in a flow run shares: (the task's definition, `(key,
#: cloudpickled task)`; the flow run; the flow's process id; for a task under a time
#: limit, the runner's `StartLog` actor, else None).
Shared = tuple[tuple[str, bytes], FlowRunIdentity | None, int, Any]

#: What a run's remote call says besides its arguments: `[run name, run count, run id
#: bytes, how many of the values are positional arguments, the names of the keyword
#: arguments that follow them, the positions of the values that are containers]`. Lists
#: of plain values, which Ray serializes with msgpack (a tuple would be pickled).
Header = list[Any]


def task_function(shared: Shared) -> Callable[..., tuple[Any, Report]]:
    """The function a task's runs call on Ray (`ray.remote` of it), `shared` inside: Ray
    exports a remote function once and each worker loads it once, so the task crosses
    once per worker and each call carries only its run's header and arguments."""

    def run(header: Header, *values: Any) -> tuple[Any, Report]:
        return run_task(shared, header, *values)

    return run


def run_task(shared: Shared, header: Header, *values: Any) -> tuple[Any, Report]:
    """One attempt of a task run (see `Shared` and `Header`). The arguments come as
    top-level values, so Ray resolves the upstream ObjectRefs among them in this worker;
    refs nested in the containers the flow's process named arrive as refs and are
    resolved here."""
    from ferroflow._task_runners import ThreadPoolTaskRunner

    definition, flow_run, flow_pid, start_log = shared
    name, run_count, run_id, positional, names, containers = header
    if start_log is not None:
        start_log.record.remote(attempt_key(run_id, run_count))
    resolved = _resolve_nested(list(values), containers) if containers else values
    args = tuple(resolved[:positional])
    kwargs = dict(zip(names, resolved[positional:], strict=True)) if names else None
    kind, data, records = run_in_cluster_worker(
        definition, flow_run, (name, run_count, run_id), args, kwargs, flow_pid, ThreadPoolTaskRunner
    )
    if kind == RETURNED:
        return data, [RETURNED, None, records]
    if kind == RAISED:
        return None, [RAISED, describe(data), records]
    return None, [RETURNED_STATE, data, records]


class StartLog:
    """When the attempts of runs under a time limit started, as their workers tell it: a
    Ray actor (of no CPU) of a runner with such runs. Ray says nothing when a task starts,
    and the flow's fallback limit must count from the start, not the launch: a run that
    waits in Ray's queue longer than its limit has not timed out."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def record(self, key: str) -> None:
        self._started.setdefault(key, time.time())

    def started(self, key: str) -> float | None:
        """When (wall clock) the attempt `key` started, or None if it has not."""
        return self._started.get(key)


def attempt_key(run_id: bytes, run_count: int) -> str:
    """An attempt's key in the `StartLog`."""
    return f"{run_id.hex()}/{run_count}"


def containers_among(values: tuple[Any, ...]) -> list[int]:
    """The positions of `values` that are containers (where a nested ObjectRef may be)."""
    return [index for index, value in enumerate(values) if isinstance(value, CONTAINERS)]


def _resolve_nested(values: list[Any], containers: list[int]) -> list[Any]:
    """`values` with the ObjectRefs inside the containers at `containers` replaced by
    their values, fetched together (their runs have ended: the engine launched this
    one after them)."""
    import ray

    found: list[Any] = []
    for index in containers:
        _collect_refs(values[index], ray.ObjectRef, found)
    if found:
        fetched = dict(zip(found, ray.get(found), strict=True))
        for index in containers:
            values[index] = _replace_refs(values[index], ray.ObjectRef, fetched)
    return values


def _collect_refs(value: Any, ref_type: type[Any], found: list[Any]) -> None:
    if isinstance(value, ref_type):
        found.append(value)
    elif _is_container(value):
        for item in value.values() if _is_dict(value) else value:
            _collect_refs(item, ref_type, found)


def _replace_refs(value: Any, ref_type: type[Any], fetched: dict[Any, Any]) -> Any:
    """`value` with its refs replaced; a container without refs is kept as it is, one with
    refs is copied with its own type (a dict subclass, a named tuple)."""
    if isinstance(value, ref_type):
        return fetched[value]
    if _is_dict(value):
        changed = {
            key: new for key, item in value.items() if (new := _replace_refs(item, ref_type, fetched)) is not item
        }
        if not changed:
            return value
        copied = value.copy()
        copied.update(changed)
        return copied
    if _is_container(value):
        old = tuple(value)
        new = [_replace_refs(item, ref_type, fetched) for item in old]
        if all(after is before for after, before in zip(new, old, strict=True)):
            return value
        rebuild: Any = value.__class__
        return rebuild(*new) if hasattr(value, "_fields") else rebuild(new)  # a named tuple takes its fields
    return value


# (Predicates, not `isinstance` in place: a value stays `Any` for the checkers.)
def _is_container(value: Any) -> bool:
    return isinstance(value, CONTAINERS)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)
