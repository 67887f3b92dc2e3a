"""Run contexts: which flow run and task run the calling code belongs to.

A flow run's context lives in a `ContextVar` of the thread running the flow function.
Task runs are known to the engine instead: whichever thread executes a run (a worker,
or the flow's own thread for a direct call), `ferroflow._core.current_run()` names it,
along with the flow run it belongs to. So code inside a task reaches its flow run
without any context being copied into worker threads.

This module sits low in the package: it knows runs and flow runs, not the engine that
executes them nor the event loops where coroutine runs execute (those belong to a flow
run's task runner). The flow, task and runner a context carries are held, not imported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ferroflow import _core
from ferroflow.exceptions import MissingContextError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["FlowRun", "FlowRunContext", "TaskRun", "TaskRunContext", "get_run_context", "tags"]


class FlowRun:
    """The record of one flow run: its id, name, parameters, attempts so far
    (`run_count`), and the tags of the `ferroflow.tags(...)` blocks it was called in."""

    __slots__ = ("id", "name", "flow_id", "parameters", "run_count", "tags", "_started_at")

    def __init__(self, id: Any, name: str, parameters: dict[str, Any]) -> None:
        self.id = id
        self.name = name
        self.parameters = parameters
        self.run_count = 0
        self.tags = sorted(_current_tags.get())
        self._started_at = time.time()

    @property
    def expected_start_time(self) -> datetime:
        """When the run started (in-process, a run starts when it is called), in UTC."""
        from datetime import datetime, timezone

        return datetime.fromtimestamp(self._started_at, tz=timezone.utc)

    def __repr__(self) -> str:
        return f"FlowRun(id={self.id}, name={self.name!r})"


class TaskRun:
    """The record of one task run, as `TaskRunContext.get().task_run` and its state hooks
    show it: its id, name, flow run id, attempts so far (`run_count`: 1 in the first, 2
    in the first retry, ...), task key and tags."""

    __slots__ = ("id", "name", "flow_run_id", "run_count", "task_key", "_task_tags", "_context_tags")

    def __init__(
        self,
        id: Any,
        name: str,
        flow_run_id: Any,
        run_count: int = 1,
        task_key: str | None = None,
        task_tags: frozenset[str] | set[str] = frozenset(),
        context_tags: frozenset[str] = frozenset(),
    ) -> None:
        self.id = id
        self.name = name
        self.flow_run_id = flow_run_id
        self.run_count = run_count
        self.task_key = task_key
        self._task_tags = task_tags
        self._context_tags = context_tags

    @property
    def tags(self) -> list[str]:
        """The task's tags and those of the `ferroflow.tags(...)` blocks around the call
        that made the run (a list, as Prefect's), sorted. Joined when asked: a run that
        prints or logs makes a record per line, and most never read its tags."""
        return sorted(self._task_tags | self._context_tags)

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id}, name={self.name!r})"


class _OutsideFlows:
    """Set as the current flow run where code must run outside flows although the thread
    executes a run of one (a done-callback of a future made outside flows)."""

    __slots__ = ()


_OUTSIDE = _OutsideFlows()

_current_flow_run: ContextVar[FlowRunContext | _OutsideFlows | None] = ContextVar("ferroflow_flow_run", default=None)

#: The coroutine run the current asyncio task executes (an `AsyncRun`), if any: async
#: runs execute on event loops, outside the engine's threads, so they are found here.
current_async_run: ContextVar[Any] = ContextVar("ferroflow_async_run", default=None)


class CarriedRun:
    """A run continued on a thread other than the one the engine gave it (a time limit's
    helper thread, an async hook's loop): set as `current_async_run` there, it answers
    for the run as an `AsyncRun` does (`current`, `future`), so run contexts and loggers
    find it."""

    __slots__ = ("current",)

    def __init__(self, current: tuple[Any, ...]) -> None:
        #: `(future, run_name, task, flow_run_context, run_count, arguments)`, as an AsyncRun's.
        self.current = current

    @property
    def future(self) -> Any:
        return self.current[0]


def carry_run() -> Any:
    """The run the calling code executes, in a form `current_async_run` can hold on
    another thread; None outside task runs."""
    current = _core.current_run()
    if current is not None:
        return CarriedRun(current)
    run = current_async_run.get()
    if run is None or isinstance(run, _core.AsyncRun):
        return run
    # Taken as it is now: a process pool's worker moves its current run (a `SegmentRun`)
    # on to the next run of its segment.
    return CarriedRun(run.current)


class FlowRunContext:
    """What a running flow knows: the flow, its run record, its task runner, its options."""

    __slots__ = ("flow", "flow_run", "task_runner", "log_prints", "parameters", "logger")

    def __init__(self, flow: Any, flow_run: FlowRun, task_runner: Any, log_prints: bool, logger: Any) -> None:
        self.flow = flow  # a ferroflow.flows.Flow
        self.flow_run = flow_run
        self.task_runner = task_runner  # a ferroflow.task_runners.TaskRunner
        self.log_prints = log_prints
        self.parameters = flow_run.parameters
        self.logger = logger

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The flow run of the calling code: from the flow's own thread or task, or from
        a task run (executed by the engine, or a coroutine on an event loop)."""
        context = _current_flow_run.get()
        if context is not None:
            return None if isinstance(context, _OutsideFlows) else context
        current = _core.current_run()
        flow_context: FlowRunContext | None
        if current is not None:
            flow_context = current[3]
        else:
            async_run = current_async_run.get()
            flow_context = None if async_run is None else async_run.current[3]
        return flow_context

    @contextmanager
    def entered(self) -> Generator[FlowRunContext, None, None]:
        token = _current_flow_run.set(self)
        try:
            yield self
        finally:
            _current_flow_run.reset(token)


class TaskRunContext:
    """What a running task knows: the task, its run record, its parameters, and its flow
    run if any."""

    __slots__ = ("task", "task_run", "flow_run_context", "future", "_arguments", "_parameters")

    def __init__(
        self,
        task: Any,
        task_run: TaskRun,
        flow_run_context: FlowRunContext | None,
        future: Any,
        arguments: Any = None,
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run_context = flow_run_context
        self.future = future
        self._arguments = arguments  # a `_core.RunArguments`, resolved when asked
        self._parameters: dict[str, Any] | None = None

    @property
    def parameters(self) -> dict[str, Any]:
        """The run's arguments by parameter name, defaults applied, the results of its
        upstream futures in place of the futures (as Prefect's). Bound on first use."""
        parameters = self._parameters
        if parameters is None:
            if self._arguments is None:
                parameters = {}
            else:
                args, kwargs = self._arguments.resolved()
                parameters = self.task.bind_parameters(args, kwargs or {})
            self._parameters = parameters
        return parameters

    @property
    def flow_run(self) -> FlowRun | None:
        return None if self.flow_run_context is None else self.flow_run_context.flow_run

    @property
    def flow(self) -> Any:
        return None if self.flow_run_context is None else self.flow_run_context.flow

    @property
    def log_prints(self) -> bool:
        if self.task.log_prints is not None:
            return bool(self.task.log_prints)
        return bool(self.flow_run_context and self.flow_run_context.log_prints)

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The task run the calling code executes, or None."""
        current = _core.current_run()
        if current is None:
            async_run = current_async_run.get()
            if async_run is None:
                return None
            current = async_run.current
        future, name, task, flow_context, run_count, arguments = current
        flow_run_id = None if flow_context is None else flow_context.flow_run.id
        task_run = TaskRun(
            future.task_run_id, name, flow_run_id, run_count, task.task_key, task.tags, _current_tags.get()
        )
        return cls(task, task_run, flow_context, future, arguments)


def call_in_flow_run(context: FlowRunContext | None, fn: Callable[..., Any], *args: Any) -> Any:
    """Calls `fn(*args)` with `context` as the current flow run (None: outside flows),
    whatever run the calling thread executes: work `fn` submits goes to that flow run."""
    token = _current_flow_run.set(_OUTSIDE if context is None else context)
    try:
        return fn(*args)
    finally:
        _current_flow_run.reset(token)


def call_done_callback(flow_run_context: FlowRunContext | None, fn: Callable[[Any], Any], future: Any) -> Any:
    """Called by the bindings for every done-callback of a future: `fn(future)` runs in
    the flow run of that future (None: outside flows), so work it submits belongs there."""
    return call_in_flow_run(flow_run_context, fn, future)


def current_flow_run_context() -> FlowRunContext | None:
    """The flow run the calling thread is in by its own context (the flow function's
    thread), not through a task run it executes."""
    context = _current_flow_run.get()
    return None if isinstance(context, _OutsideFlows) else context


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The current task run's context, else the current flow run's."""
    context = TaskRunContext.get() or FlowRunContext.get()
    if context is None:
        raise MissingContextError("No run context available. You are not in a flow or task run context.")
    return context


_current_tags: ContextVar[frozenset[str]] = ContextVar("ferroflow_tags", default=frozenset())


@contextmanager
def tags(*new_tags: str) -> Generator[set[str], None, None]:
    """Adds tags to every task created or called in the block (Prefect's `tags`)."""
    merged = _current_tags.get() | frozenset(new_tags)
    token = _current_tags.set(merged)
    try:
        yield set(merged)
    finally:
        _current_tags.reset(token)
