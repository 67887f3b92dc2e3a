"""The task runners (`ferroflow.task_runners` names them for users): where submitted
task runs execute.

`ThreadPoolTaskRunner` (the default; `ConcurrentTaskRunner` is its Prefect 2 name) runs
them on native worker threads of ferroflow's engine; `SequentialTaskRunner` (Prefect 2's,
dropped by Prefect 3) runs each at once in the submitting thread, in order;
`ProcessPoolTaskRunner` in worker processes. A flow run uses a fresh `duplicate()` of its
flow's runner, so a configured runner is a template.

The engine is always the scheduler (`ferroflow._bridge.RunnerEngine`): dependencies,
states, retries, futures and waiting are its. A runner configures it (`_worker_count`,
`_sequential`) and decides only where a claimed run executes that the engine hands over
instead of running it on its own threads (`_execute`, the one extension point: coroutine
runs go to the runner's event loop; a process pool, Dask or Ray runner sends them away).
The Dask and Ray runners (`ferroflow.dask`, `ferroflow.ray`) build on `TaskRunner` here.
"""

from __future__ import annotations

import abc
import atexit
import os
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from ferroflow._arguments import split_map
from ferroflow._bridge import ClaimedRun, RunnerEngine, after_fork_in_child, begin_exit
from ferroflow._core import PrefectConcurrentFuture, PrefectFutureList
from ferroflow._loop import RunLoop
from ferroflow.context import FlowRunContext
from ferroflow.logging import get_logger

if TYPE_CHECKING:
    from ferroflow._arguments import MapCall
    from ferroflow._process_pool import ProcessPool

F = TypeVar("F")

#: Threads a pool may grow to when `max_workers` is not given. The pool starts with one
#: thread and grows only while queued runs wait and every running one is blocked or slow,
#: so this bound costs nothing unless tasks block (then it caps the thread count, where
#: Prefect's default is one thread per task).
DEFAULT_MAX_WORKERS = 256

_MAX_WORKERS_ENV = (
    "FERROFLOW_THREAD_POOL_MAX_WORKERS",
    "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS",
    "PREFECT_TASK_RUNNER_THREAD_POOL_MAX_WORKERS",
)


def _max_workers_setting(variables: tuple[str, ...], pool: str) -> int | None:
    """The first of `variables` set in the environment, as a worker count (a
    `ValueError` naming the variable if it is not a whole number >= 1), else None."""
    for variable in variables:
        raw = os.environ.get(variable)
        if raw:
            try:
                value = int(raw)
            except ValueError:
                value = 0
            if value < 1:
                raise ValueError(f"{variable}={raw!r}: the {pool}'s max_workers must be a whole number of at least 1")
            return value
    return None


def _default_max_workers() -> int:
    setting = _max_workers_setting(_MAX_WORKERS_ENV, "thread pool")
    return DEFAULT_MAX_WORKERS if setting is None else setting


def _check_max_workers(runner: str, max_workers: Any) -> int | None:
    if max_workers is None:
        return None
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(
            f"{runner}: max_workers must be an int or None, got {type(max_workers).__name__} {max_workers!r}"
        )
    if max_workers < 1:
        raise ValueError(f"{runner}: max_workers must be at least 1, got {max_workers}")
    return max_workers


class TaskRunner(abc.ABC, Generic[F]):
    """The interface of Prefect's task runners: a context manager with `submit` and `map`.

    A subclass gives configuration: `duplicate()`, `_worker_count` (the engine's worker
    threads; 0: a run executes in the thread that waits for it), `_sequential`, equality.
    A runner that executes runs elsewhere overrides `_execute(runs)`: it receives batches
    of claimed runs and reports each end through the run object.
    """

    #: Whether each submitted run executes at once, in the submitting thread, in order.
    _sequential = False
    #: Whether the engine hands every submitted and mapped run to `_execute` (not only
    #: coroutine runs), uncounted against `_worker_count`: the runner bounds its own.
    _executes_elsewhere = False

    def __init__(self) -> None:
        self._init_running_state()

    def _init_running_state(self) -> None:
        """What a runner holds while started (`_RUNNING_STATE`), as before its first start."""
        self.logger = get_logger(f"task_runner.{self.name}")
        self._started = False
        self._engine: RunnerEngine | None = None
        self._context: FlowRunContext | None = None
        self._loop: RunLoop | None = None
        self._loop_lock = threading.Lock()

    @property
    def name(self) -> str:
        return type(self).__name__.lower().replace("taskrunner", "")

    #: What a started runner holds besides its configuration: not pickled, not copied.
    _RUNNING_STATE: tuple[str, ...] = ("logger", "_started", "_engine", "_context", "_loop", "_loop_lock")

    def __getstate__(self) -> dict[str, Any]:
        """A runner pickles (and copies) as its configuration: an unstarted runner."""
        return {key: value for key, value in self.__dict__.items() if key not in self._RUNNING_STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._init_running_state()
        vars(self).update(state)

    @abc.abstractmethod
    def duplicate(self) -> TaskRunner[F]:
        """A fresh, unstarted runner with the same configuration."""

    @property
    @abc.abstractmethod
    def _worker_count(self) -> int:
        """Worker threads of the engine; 0 means runs execute in the threads that wait."""

    # -- Prefect's API ---------------------------------------------------------------

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None, dependencies: Any = None
    ) -> F:
        """Runs `task` with `parameters` (by name); returns its future."""
        args, kwargs = task._signature.to_call(parameters)
        # Every runner's futures are the engine's: `F` names them for Prefect's signature.
        return cast("F", self._submit(task, args, kwargs, wait_for))

    def map(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> PrefectFutureList[Any]:
        """One run of `task` per element of the iterable `parameters`, zipped."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        args, kwargs = task._signature.to_call(parameters)
        return self._map(task, split_map(task.name, task._signature, args, kwargs), wait_for)

    def __enter__(self) -> TaskRunner[F]:
        if self._started:
            raise RuntimeError("The task runner is already started!")
        self._start(None)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop()

    # -- the extension point: where claimed runs execute -------------------------------

    def _execute(self, runs: list[ClaimedRun]) -> None:
        """Executes runs the engine claimed and handed over, and reports each end through
        the run. Here: coroutine runs, as asyncio tasks on this runner's event loop.
        Called from an engine thread; an exception ends the batch's runs Crashed."""
        self._run_loop().start(runs)

    def _run_loop(self) -> RunLoop:
        """The event loop of this runner's coroutine runs, made on first use."""
        with self._loop_lock:
            if self._loop is None or self._loop.loop.is_closed():
                context = self._context
                self._loop = RunLoop(
                    "ferroflow-event-loop" if context is None else f"ferroflow-loop-{context.flow_run.name}"
                )
            return self._loop

    # -- life: started by a flow run (or `with`), stopped when its runs have ended ---------

    def _start(self, context: FlowRunContext | None) -> RunnerEngine:
        if self._started:
            raise RuntimeError("The task runner is already started!")
        self._context = context
        # Outside a flow run a runner lives long (the process-wide one): the values of
        # runs nobody can read any more are freed at once.
        self._engine = RunnerEngine(
            self._worker_count,
            context,
            self._execute,
            sequential=self._sequential,
            release_unread=context is None,
            executes_elsewhere=self._executes_elsewhere,
        )
        self._started = True
        return self._engine

    def _stop(self) -> None:
        """Waits for every run, then stops the engine's workers and the event loop."""
        engine = self._engine
        try:
            if engine is not None:
                try:
                    engine.wait_all()
                finally:
                    engine.shutdown()
        finally:
            self._close_loop()
            self._started = False

    def _interrupt_pending(self) -> int:
        """Runs that have not started end Cancelled; returns how many."""
        return 0 if self._engine is None else self._engine.cancel_pending()

    def _interrupt(self) -> int:
        """Ctrl-C: runs that have not started end Cancelled, and so do coroutine runs
        waiting out a retry delay; running ones finish. Returns how many had not started."""
        cancelled = self._interrupt_pending()
        with self._loop_lock:
            loop = self._loop
        if loop is not None:
            loop.interrupt()
        timeouts = sys.modules.get("ferroflow._timeouts")  # loaded once a run has a time limit
        if timeouts is not None:
            timeouts.interrupt_lane_waits(self._context)
        return cancelled

    def _close_loop(self) -> None:
        with self._loop_lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.close()

    # -- the engine operations tasks perform (each one call into the bridge) -------------

    def _running_engine(self) -> RunnerEngine:
        engine = self._engine
        if engine is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        return engine

    def _submit(
        self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None
    ) -> PrefectConcurrentFuture[Any]:
        engine = self._engine or self._running_engine()  # the hot path: one attribute read
        return engine.submit(task._spec, args, kwargs, wait_for)

    def _map(self, task: Any, call: MapCall, wait_for: Iterable[Any] | None) -> PrefectFutureList[Any]:
        return self._running_engine().map(task._spec, call, wait_for)

    def _call(
        self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None, bare_name: bool
    ) -> PrefectConcurrentFuture[Any]:
        return self._running_engine().call(task._spec, args, kwargs, wait_for, bare_name)

    def _claim_call(
        self, task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None, bare_name: bool
    ) -> ClaimedRun:
        return self._running_engine().claim_call(task._spec, args, kwargs, wait_for, bare_name)


class ThreadPoolTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Runs tasks on native worker threads; at most `max_workers` at once.

    The pool grows toward `max_workers` only while runs wait and the running ones are
    blocked or slow; trivial tasks run in batches on one thread.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__()
        self._max_workers = _check_max_workers(type(self).__name__, max_workers)

    @property
    def max_workers(self) -> int:
        return self._max_workers if self._max_workers is not None else _default_max_workers()

    @property
    def _worker_count(self) -> int:
        return self.max_workers

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self._max_workers)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.max_workers == self.max_workers

    def __hash__(self) -> int:
        return hash((type(self), self.max_workers))

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self._max_workers})"


#: Prefect 2's name for the thread-pool runner, kept as in Prefect 3.
ConcurrentTaskRunner = ThreadPoolTaskRunner


class SequentialTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Prefect 2's sequential runner: each submitted run executes at once, in the
    submitting thread, one at a time and in submission order."""

    _sequential = True

    @property
    def _worker_count(self) -> int:
        return 0

    def duplicate(self) -> SequentialTaskRunner:
        return type(self)()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))


_PROCESS_MAX_WORKERS_ENV = ("FERROFLOW_PROCESS_POOL_MAX_WORKERS", "PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS")
_START_METHOD_ENV = "FERROFLOW_PROCESS_POOL_START_METHOD"


def _default_process_count() -> int:
    """The setting, else the CPUs this process may use (`os.process_cpu_count()` from
    Python 3.13, else its affinity), else `os.cpu_count()`."""
    setting = _max_workers_setting(_PROCESS_MAX_WORKERS_ENV, "process pool")
    if setting is not None:
        return setting
    process_cpu_count = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:
        return process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


class ProcessPoolTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Runs tasks in warm worker processes, at most `max_workers` at once (Prefect 3's
    `ProcessPoolTaskRunner`): CPU-bound Python work gets every core.

    The engine still schedules every run in this process (dependencies, states,
    retries, hooks, futures); only the task's function executes in a worker, which gets
    it cloudpickled once. Workers start with `spawn` (as Prefect's), or with the
    `start_method` given (or `FERROFLOW_PROCESS_POOL_START_METHOD`), on the first run,
    and live until the runner stops. Direct calls (`task(x)` in a flow) run in the flow's
    process, as in Prefect. Arguments and results must pickle (cloudpickle for the
    function). `initializer(*initargs)` runs once in each worker as it starts.
    """

    _executes_elsewhere = True

    def __init__(
        self,
        max_workers: int | None = None,
        subprocess_message_processor_factories: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        *,
        start_method: str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        self._max_workers = _check_max_workers(name, max_workers)
        if subprocess_message_processor_factories:
            raise TypeError(
                f"{name}: subprocess_message_processor_factories (Prefect's hooks for its server messages) "
                "is not supported by ferroflow"
            )
        if initializer is not None and not callable(initializer):
            raise TypeError(f"{name}: initializer must be callable, got {initializer!r}")
        self.initializer = initializer
        self.initargs = tuple(initargs)
        if start_method is not None:
            import multiprocessing

            if start_method not in multiprocessing.get_all_start_methods():
                raise ValueError(
                    f"{name}: start_method must be one of {multiprocessing.get_all_start_methods()}, "
                    f"got {start_method!r}"
                )
        self._start_method = start_method
        self._pool: ProcessPool | None = None

    _RUNNING_STATE: tuple[str, ...] = (*TaskRunner._RUNNING_STATE, "_pool")

    def _init_running_state(self) -> None:
        super()._init_running_state()
        self._pool = None

    @property
    def max_workers(self) -> int:
        return self._max_workers if self._max_workers is not None else _default_process_count()

    @property
    def start_method(self) -> str:
        return self._start_method or os.environ.get(_START_METHOD_ENV) or "spawn"

    @property
    def _worker_count(self) -> int:
        return 1  # one engine thread hands runs over; the workers are processes

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(
            max_workers=self._max_workers,
            initializer=self.initializer,
            initargs=self.initargs,
            start_method=self._start_method,
        )

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is type(self)
            and other.max_workers == self.max_workers
            and other.initializer == self.initializer
            and other.initargs == self.initargs
            and other.start_method == self.start_method
        )

    def __hash__(self) -> int:
        return hash((type(self), self.max_workers, self.start_method))

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self._max_workers})"

    def _start(self, context: FlowRunContext | None) -> RunnerEngine:
        _refuse_while_a_worker_imports_main()
        from ferroflow._process_pool import ProcessPool, acquire

        def make() -> ProcessPool:
            # Runs that tasks in a worker call, submit or map run there, on a thread pool.
            return ProcessPool(
                self.max_workers, self.start_method, self.initializer, self.initargs, nested_runner=ThreadPoolTaskRunner
            )

        pool = acquire(self._pool_configuration(), make)
        pool.flow_run = (
            None
            if context is None
            else (context.flow.name, context.flow_run.id, context.flow_run.name, bool(context.log_prints))
        )
        self._pool = pool
        return super()._start(context)

    def _pool_configuration(self) -> tuple[Any, ...]:
        """What makes two runners' workers interchangeable."""
        return (self.max_workers, self.start_method, self.initializer, self.initargs)

    def _execute(self, runs: list[ClaimedRun]) -> None:
        """Every claimed run goes to the worker processes."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the process pool has been shut down and executes no more runs")
        pool.submit(runs)

    def _stop(self) -> None:
        try:
            super()._stop()
        finally:
            pool, self._pool = self._pool, None
            if pool is not None:
                from ferroflow._process_pool import release

                release(self._pool_configuration(), pool)

    def _interrupt(self) -> int:
        cancelled = super()._interrupt()
        if self._pool is not None:
            self._pool.interrupt()
        return cancelled


def _refuse_while_a_worker_imports_main() -> None:
    """A spawned worker imports the parent's script again before it serves: a script
    that runs its flow without the `__main__` guard would start a pool there too."""
    process = sys.modules.get("multiprocessing.process")
    if process is not None and getattr(process.current_process(), "_inheriting", False):
        raise RuntimeError(
            "ProcessPoolTaskRunner was started while a worker process was importing the main script: "
            'start the flow under `if __name__ == "__main__":` (worker processes are started with spawn, '
            "which imports the script again)"
        )


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
        if not (engine.runs >= _DEFAULT_RUNNER_RECYCLE_AT and engine.idle):
            return runner
    with _default_lock:
        current = _default_runner
        if current is not None and current is not runner:
            return current  # another thread replaced it meanwhile
        fresh = ThreadPoolTaskRunner()
        fresh._start(None)
        _default_runner = fresh
        if current is not None:
            current._stop()
        return fresh


def current_runner() -> TaskRunner[Any]:
    """The runner a task call goes to: the current flow run's (also from inside one of
    its task runs), else the process-wide default."""
    context = FlowRunContext.get()
    return default_runner() if context is None else context.task_runner


def _shutdown_default_runner() -> None:
    """At exit: from now on every new run is cancelled (with its logged line); runs of
    the process-wide runner that have not started end Cancelled (one line says how many);
    running ones finish (the bindings' own exit hook then stops every engine). A Ctrl-C
    meanwhile stops the wait quietly: no traceback."""
    begin_exit()
    runner = _default_runner  # kept as the default: work submitted now is cancelled there
    if runner is None or runner._engine is None:
        return
    try:
        cancelled = runner._interrupt_pending()
        if cancelled:
            runner.logger.warning(f"{cancelled} task run(s) that had not started were cancelled at exit")
        runner._engine.wait_all()
        runner._close_loop()
    except KeyboardInterrupt:
        runner._interrupt()


def _after_fork_in_child() -> None:
    global _default_runner, _default_lock
    after_fork_in_child()
    _default_lock = threading.Lock()
    _default_runner = None


atexit.register(_shutdown_default_runner)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
