"""Task runners: where submitted task runs execute.

`ThreadPoolTaskRunner` (the default; `ConcurrentTaskRunner` is its Prefect 2 name) runs
them on native worker threads of ferroflow's engine; `SequentialTaskRunner` (Prefect 2's,
dropped by Prefect 3) runs each at once in the submitting thread, in order. A flow run
uses a fresh `duplicate()` of its flow's runner, so a configured runner is a template.
"""

from __future__ import annotations

import abc
import atexit
import os
import threading
from typing import TYPE_CHECKING, Any, Iterable

from ferroflow import _core
from ferroflow._arguments import split_map
from ferroflow.context import FlowRunContext
from ferroflow.logging import get_logger

if TYPE_CHECKING:
    from ferroflow._arguments import MapCall
    from ferroflow.tasks import Task

__all__ = ["TaskRunner", "ThreadPoolTaskRunner", "ConcurrentTaskRunner", "SequentialTaskRunner"]

#: Threads a pool may grow to when `max_workers` is not given. The pool starts with one
#: thread and grows only while queued runs wait and every running one is blocked or slow,
#: so this bound costs nothing unless tasks block (then it caps the thread count, where
#: Prefect's default is one thread per task).
DEFAULT_MAX_WORKERS = 256

_MAX_WORKERS_ENV = ("FERROFLOW_THREAD_POOL_MAX_WORKERS", "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS", "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS")


def _default_max_workers() -> int:
    for variable in _MAX_WORKERS_ENV:
        value = os.environ.get(variable)
        if value:
            return int(value)
    return DEFAULT_MAX_WORKERS


class TaskRunner(abc.ABC):
    """The interface of Prefect's task runners: a context manager with `submit` and `map`."""

    def __init__(self) -> None:
        self.logger = get_logger(f"task_runner.{self.name}")
        self._started = False

    @property
    def name(self) -> str:
        return type(self).__name__.lower().replace("taskrunner", "")

    @abc.abstractmethod
    def duplicate(self) -> TaskRunner:
        """A fresh, unstarted runner with the same configuration."""

    @abc.abstractmethod
    def submit(self, task: Task, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None, dependencies: Any = None) -> Any:
        """Runs `task` with `parameters` (by name); returns its future."""

    def map(self, task: Task, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None) -> Any:
        """One run of `task` per element of the iterable `parameters`, zipped."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        args, kwargs = task._signature.to_call(parameters)
        return self._map(task, split_map(task.name, task._signature, args, kwargs), wait_for)

    def __enter__(self) -> TaskRunner:
        if self._started:
            raise RuntimeError("The task runner is already started!")
        self._start(None)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop()

    @abc.abstractmethod
    def _start(self, context: FlowRunContext | None) -> None: ...

    @abc.abstractmethod
    def _stop(self) -> None: ...

    @abc.abstractmethod
    def _submit(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None) -> Any: ...

    @abc.abstractmethod
    def _map(self, task: Task, call: MapCall, wait_for: Iterable[Any] | None) -> Any: ...

    @abc.abstractmethod
    def _call(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None, bare_name: bool) -> Any: ...

    @abc.abstractmethod
    def _wait_all(self) -> None:
        """Blocks until every run submitted so far has finished."""

    @abc.abstractmethod
    def _idle(self) -> bool:
        """Whether every run submitted so far has finished."""

    @abc.abstractmethod
    def _cancel_pending(self) -> int:
        """Cancels every run that has not started; returns how many."""


class _EngineTaskRunner(TaskRunner):
    """A runner backed by a ferroflow engine with a given number of worker threads."""

    def __init__(self) -> None:
        super().__init__()
        self._engine: _core.Engine | None = None

    @property
    @abc.abstractmethod
    def _worker_count(self) -> int:
        """Worker threads of the engine; 0 means runs execute in the threads that wait."""

    def _start(self, context: FlowRunContext | None) -> None:
        if self._started:
            raise RuntimeError("The task runner is already started!")
        import uuid  # here, not at import: `import ferroflow` stays fast

        self._engine = _core.Engine(self._worker_count, context, uuid.uuid4().bytes)
        self._started = True

    def _stop(self) -> None:
        if self._engine is not None:
            try:
                self._engine.wait_idle()
            finally:
                self._engine.shutdown()
        self._started = False

    def _running_engine(self) -> _core.Engine:
        engine = self._engine
        if engine is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        return engine

    def submit(self, task: Task, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None, dependencies: Any = None) -> Any:
        args, kwargs = task._signature.to_call(parameters)
        return self._submit(task, args, kwargs, wait_for)

    def _submit(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None) -> Any:
        engine = self._engine or self._running_engine()  # the hot path: one attribute read
        return engine.submit(task._spec, args, kwargs or None, wait_for)

    def _map(self, task: Task, call: MapCall, wait_for: Iterable[Any] | None) -> Any:
        return self._running_engine().map(task._spec, call.args, call.kwargs or None, call.slots, call.iterables, wait_for)

    def _call(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None, bare_name: bool) -> Any:
        return self._running_engine().call(task._spec, args, kwargs or None, wait_for, bare_name)

    def _claim_call(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None, bare_name: bool) -> Any:
        return self._running_engine().claim_call(task._spec, args, kwargs or None, wait_for, bare_name)

    def _wait_all(self) -> None:
        self._running_engine().wait_idle()

    def _idle(self) -> bool:
        return self._running_engine().unfinished == 0

    def _cancel_pending(self) -> int:
        return self._running_engine().cancel_pending()


class ThreadPoolTaskRunner(_EngineTaskRunner):
    """Runs tasks on native worker threads; at most `max_workers` at once.

    The pool grows toward `max_workers` only while runs wait and the running ones are
    blocked or slow; trivial tasks run in batches on one thread.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        if max_workers is not None and max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        self._max_workers = max_workers

    @property
    def max_workers(self) -> int:
        return self._max_workers if self._max_workers is not None else _default_max_workers()

    @property
    def _worker_count(self) -> int:
        return self.max_workers

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self._max_workers)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.max_workers == self.max_workers  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.max_workers))

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._max_workers})"

    def __getstate__(self) -> dict[str, Any]:
        return {"_max_workers": self._max_workers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["_max_workers"])  # type: ignore[misc]


#: Prefect 2's name for the thread-pool runner, kept as in Prefect 3.
ConcurrentTaskRunner = ThreadPoolTaskRunner


class SequentialTaskRunner(_EngineTaskRunner):
    """Prefect 2's sequential runner: each submitted run executes at once, in the
    submitting thread, one at a time and in submission order."""

    @property
    def _worker_count(self) -> int:
        return 0

    def duplicate(self) -> SequentialTaskRunner:
        return type(self)()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def _submit(self, task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None) -> Any:
        future = super()._submit(task, args, kwargs, wait_for)
        future.wait()  # an engine without workers runs it here, now
        return future

    def _map(self, task: Task, call: MapCall, wait_for: Iterable[Any] | None) -> Any:
        futures = super()._map(task, call, wait_for)
        futures.wait()
        return futures


# -- the runner used where no flow run is active ----------------------------------------

_default_lock = threading.Lock()
_default_runner: ThreadPoolTaskRunner | None = None
#: A process-wide runner that has registered this many runs and is idle is replaced by
#: a fresh one, so a long-lived process calling tasks outside flows does not grow forever
#: (futures of the old one stay readable).
_DEFAULT_RUNNER_RECYCLE_AT = 1 << 20


def default_runner() -> ThreadPoolTaskRunner:
    """The runner for `.submit()`, `.map()` and calls made outside any flow run."""
    global _default_runner
    runner = _default_runner
    if runner is not None and runner._engine is not None:
        engine = runner._engine
        if not (engine.runs >= _DEFAULT_RUNNER_RECYCLE_AT and engine.unfinished == 0):
            return runner
    with _default_lock:
        if _default_runner is runner:
            fresh = ThreadPoolTaskRunner()
            fresh._start(None)
            _default_runner = fresh
            if runner is not None:
                runner._stop()
        return _default_runner  # type: ignore[return-value]


def current_runner() -> TaskRunner:
    """The runner a task call goes to: the current flow run's (also from inside one of
    its task runs), else the process-wide default."""
    context = FlowRunContext.get()
    return default_runner() if context is None else context.task_runner


def _shutdown_default_runner() -> None:
    global _default_runner
    with _default_lock:
        runner, _default_runner = _default_runner, None
    if runner is not None:
        runner._stop()


def _after_fork_in_child() -> None:
    global _default_runner, _default_lock
    _core.after_fork_in_child()
    _default_lock = threading.Lock()
    _default_runner = None


atexit.register(_shutdown_default_runner)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
