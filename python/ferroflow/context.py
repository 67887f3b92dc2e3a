"""Run contexts: which flow run and task run the calling code belongs to.

A flow run's context lives in a `ContextVar` of the thread running the flow function.
Task runs are known to the engine instead: whichever thread executes a run (a worker,
or the flow's own thread for a direct call), `ferroflow._core.current_run()` names it,
along with the flow run it belongs to. So code inside a task reaches its flow run
without any context being copied into worker threads.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Iterator

from ferroflow import _core
from ferroflow.exceptions import MissingContextError

if TYPE_CHECKING:
    from ferroflow.flows import Flow
    from ferroflow.task_runners import TaskRunner
    from ferroflow.tasks import Task

__all__ = ["FlowRun", "FlowRunContext", "TaskRun", "TaskRunContext", "get_run_context", "tags"]


class FlowRun:
    """The record of one flow run: its id, name and parameters."""

    __slots__ = ("id", "name", "flow_id", "parameters", "run_count")

    def __init__(self, id: Any, name: str, parameters: dict[str, Any]) -> None:
        self.id = id
        self.name = name
        self.parameters = parameters
        self.run_count = 0

    def __repr__(self) -> str:
        return f"FlowRun(id={self.id}, name={self.name!r})"


class TaskRun:
    """The record of one task run, as `TaskRunContext.get().task_run` shows it."""

    __slots__ = ("id", "name", "flow_run_id")

    def __init__(self, id: Any, name: str, flow_run_id: Any) -> None:
        self.id = id
        self.name = name
        self.flow_run_id = flow_run_id

    def __repr__(self) -> str:
        return f"TaskRun(id={self.id}, name={self.name!r})"


_current_flow_run: ContextVar[FlowRunContext | None] = ContextVar("ferroflow_flow_run", default=None)

#: The coroutine run the current asyncio task executes (an `AsyncRun`), if any: async
#: runs execute on event loops, outside the engine's threads, so they are found here.
current_async_run: ContextVar[Any] = ContextVar("ferroflow_async_run", default=None)


class FlowRunContext:
    """What a running flow knows: the flow, its run record, its task runner, its options."""

    __slots__ = ("flow", "flow_run", "task_runner", "log_prints", "parameters", "logger", "_run_loop", "_run_loop_lock")

    def __init__(self, flow: Flow, flow_run: FlowRun, task_runner: TaskRunner, log_prints: bool, logger: Any) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.parameters = flow_run.parameters
        self.logger = logger
        self._run_loop: Any = None
        self._run_loop_lock = threading.Lock()

    @classmethod
    def get(cls) -> FlowRunContext | None:
        """The flow run of the calling code: from the flow's own thread or task, or from
        a task run (executed by the engine, or a coroutine on an event loop)."""
        context = _current_flow_run.get()
        if context is not None:
            return context
        current = _core.current_run()
        if current is not None:
            return current[3]
        async_run = current_async_run.get()
        return None if async_run is None else async_run.identity[2]

    def run_loop(self) -> Any:
        """The event loop where this flow run's submitted coroutines run, made on first use."""
        with self._run_loop_lock:
            if self._run_loop is None:
                from ferroflow._async import RunLoop

                self._run_loop = RunLoop(f"ferroflow-loop-{self.flow_run.name}")
            return self._run_loop

    def close_run_loop(self) -> None:
        """Stops the flow run's loop, if it made one; its runs have ended by then."""
        with self._run_loop_lock:
            loop, self._run_loop = self._run_loop, None
        if loop is not None:
            loop.close()

    @contextmanager
    def entered(self) -> Iterator[FlowRunContext]:
        token = _current_flow_run.set(self)
        try:
            yield self
        finally:
            _current_flow_run.reset(token)


class TaskRunContext:
    """What a running task knows: the task, its run record, and its flow run if any."""

    __slots__ = ("task", "task_run", "flow_run_context", "future")

    def __init__(self, task: Task, task_run: TaskRun, flow_run_context: FlowRunContext | None, future: Any) -> None:
        self.task = task
        self.task_run = task_run
        self.flow_run_context = flow_run_context
        self.future = future

    @property
    def flow_run(self) -> FlowRun | None:
        return None if self.flow_run_context is None else self.flow_run_context.flow_run

    @property
    def flow(self) -> Flow | None:
        return None if self.flow_run_context is None else self.flow_run_context.flow

    @property
    def log_prints(self) -> bool:
        if self.task.log_prints is not None:
            return self.task.log_prints
        return bool(self.flow_run_context and self.flow_run_context.log_prints)

    @classmethod
    def get(cls) -> TaskRunContext | None:
        """The task run the calling code executes, or None."""
        current = _core.current_run()
        if current is None:
            async_run = current_async_run.get()
            if async_run is None:
                return None
            current = (async_run.future, *async_run.identity)
        future, name, task, flow_context = current
        flow_run_id = None if flow_context is None else flow_context.flow_run.id
        return cls(task, TaskRun(future.task_run_id, name, flow_run_id), flow_context, future)


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The current task run's context, else the current flow run's."""
    context = TaskRunContext.get() or FlowRunContext.get()
    if context is None:
        raise MissingContextError("No run context available. You are not in a flow or task run context.")
    return context


_current_tags: ContextVar[frozenset[str]] = ContextVar("ferroflow_tags", default=frozenset())


@contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Adds tags to every task created or called in the block (Prefect's `tags`)."""
    merged = _current_tags.get() | frozenset(new_tags)
    token = _current_tags.set(merged)
    try:
        yield set(merged)
    finally:
        _current_tags.reset(token)


def current_tags() -> frozenset[str]:
    return _current_tags.get()
