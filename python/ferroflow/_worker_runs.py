"""Executing a prepared run in a worker: a process pool's child, a Dask or a Ray worker.

The flow's process prepares a run (`_core.prepare_runs`: its name, run count, id,
resolved arguments; a process pool prepares runs in segments, `_core.prepare_segments`)
and ships the task once, as `cloudpickled` makes it. Where it arrives, `load_task`
builds the function the engine would call, and `execute` calls it as the current run of
the worker (`current_async_run`, as a run carried to another thread; a process pool's
worker sets a `SegmentRun` once for a segment's runs): `get_run_logger()`,
`TaskRunContext.get()`, `ferroflow.runtime` and `log_prints` find it, with its name, run
count, id and flow run (`FlowRuns` makes the flow run's context once per flow run).

The runs' log records do not print in the worker: `capture_run_logs` keeps them as
plain dicts, which travel back with the run's outcome (or beside it) and are handed to
the flow process's handlers by `emit_records`, before the engine reports the run's end.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import pickle
import struct
import sys
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Generator
from types import CoroutineType
from typing import Any

from ferroflow.context import CarriedRun, current_async_run

#: The pickle protocol of everything that travels between the flow's process and workers.
PROTOCOL = 5

#: The flow run a run belongs to, as a worker's run context shows it: (flow name, flow run
#: id, flow run name, log_prints), or None outside flows.
FlowRunIdentity = tuple[str, Any, str, bool]


# -- the task: pickled once in the flow's process, loaded once per worker -------------------


def cloudpickled(value: Any) -> bytes | Exception:
    """`value` (a task, an initializer) cloudpickled, or why it cannot be. A task inside
    it (the task itself, or a task its code calls) travels as its attributes, without its
    engine spec, which the worker makes again (`rebuild_task`)."""
    import io

    import cloudpickle  # type: ignore[import-untyped]  # pyright: ignore[reportMissingTypeStubs]

    tasks = sys.modules.get("ferroflow.tasks")
    task_type: type[Any] | None = None if tasks is None else tasks.Task

    class TaskPickler(cloudpickle.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            if task_type is not None and isinstance(obj, task_type):
                return rebuild_task, (task_type, _task_state(obj))
            return super().reducer_override(obj)  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]

    buffer = io.BytesIO()
    try:
        TaskPickler(buffer, protocol=PROTOCOL).dump(value)  # pyright: ignore[reportUnknownMemberType]
    except Exception as exc:
        return exc
    return buffer.getvalue()


def _task_state(task: Any) -> dict[str, Any]:
    """A task's attributes but its engine spec (made again where it arrives)."""
    attributes: dict[str, Any] = task.__dict__
    return {key: value for key, value in attributes.items() if key != "_spec"}


def rebuild_task(cls: type[Any], state: dict[str, Any]) -> Any:
    """A task as it crossed to the worker: its attributes, and its engine spec made
    again here."""
    task: Any = object.__new__(cls)
    task.__dict__.update(state)
    task._spec = task._make_spec()
    return task


#: What a worker holds of a task: (the function the engine calls for its runs, the
#: task), or why the pickled task could not be loaded.
LoadedTask = tuple[Callable[..., Any], Any] | BaseException


def load_task(blob: bytes) -> LoadedTask:
    """(what the engine calls for the task's runs, the task) from `cloudpickled` bytes."""
    from ferroflow._task_body import engine_function

    try:
        task = pickle.loads(blob)
        call, _ = engine_function(task)
    except BaseException as exc:
        return exc
    return call, task


# -- one run ----------------------------------------------------------------------------------


def execute(
    loaded: tuple[Callable[..., Any], Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    identity: tuple[str, int, bytes],
    flow_context: Any,
) -> Any:
    """Calls the task's function for a run, as the current run of this thread (see the
    module docs); returns its value or raises its exception. A coroutine function's
    coroutine runs to its end on an event loop of its own."""
    call, task = loaded
    name, run_count, run_id = identity
    run = CarriedRun((_RunIdentity(run_id), name, task, flow_context, run_count, _Arguments(args, kwargs)))
    token = current_async_run.set(run)
    try:
        value = call(*args, **(kwargs or {}))
        if type(value) is CoroutineType:
            value = run_coroutine(value)
    finally:
        current_async_run.reset(token)
    return value


#: What a worker knows of each run of a segment (`_core.prepare_segments`): its name
#: number (or `_BARE_NAME`), its run index in its engine, its run count. For runs that
#: follow one another (a map's), the first run's three numbers (the others count up);
#: else the three numbers of every run, packed as little-endian u64 (`IDENTITY_SIZE`
#: bytes a run).
Identities = tuple[int, int, int] | bytes
IDENTITY_SIZE = 24
_IDENTITY = struct.Struct("<3Q")
_BARE_NAME = 2**64 - 1


def identity_at(identities: Identities, position: int) -> tuple[int, int, int]:
    """(name number, run index, run count) of the run at `position`."""
    if isinstance(identities, bytes):
        number, run, run_count = _IDENTITY.unpack_from(identities, position * IDENTITY_SIZE)
        return number, run, run_count
    number, run, run_count = identities
    return (number if number == _BARE_NAME else number + position), run + position, run_count


def identities_slice(identities: Identities, start: int, stop: int) -> Identities:
    """The identities of the runs from `start` to `stop`."""
    if isinstance(identities, bytes):
        return identities[start * IDENTITY_SIZE : stop * IDENTITY_SIZE]
    return identity_at(identities, start)


class SegmentRun:
    """The current run of a process pool's worker while it executes a segment: runs of
    one task, one after the other, `position` telling which. What code inside a run asks
    of it (`current`: its name, id, run count, arguments) is read from the segment's
    packed identities only then, so a run that asks nothing costs no object here."""

    __slots__ = (
        "calls",
        "flow_context",
        "identities",
        "kwargs",
        "loaded",
        "name",
        "names",
        "position",
        "seed",
        "single",
    )

    def __init__(
        self,
        loaded: LoadedTask,
        flow_context: Any,
        calls: list[Any],
        kwargs: list[dict[str, Any] | None] | None,
        single: bool,
        identities: Identities,
        names: list[str] | None,
        name: str,
        seed: bytes,
    ) -> None:
        self.loaded, self.flow_context, self.calls, self.kwargs = loaded, flow_context, calls, kwargs
        #: Whether each of `calls` is a run's one argument, not a tuple of its arguments.
        self.single = single
        self.identities, self.names, self.name, self.seed = identities, names, name, seed
        self.position = 0

    @property
    def current(self) -> tuple[Any, ...]:
        """`(future, run_name, task, flow_run_context, run_count, arguments)`, as a
        `CarriedRun`'s, for the run at `position`."""
        position = self.position
        number, run, run_count = identity_at(self.identities, position)
        if self.names is not None:
            name = self.names[position]
        else:
            name = self.name if number == _BARE_NAME else f"{self.name}-{number}"
        task = None if isinstance(self.loaded, BaseException) else self.loaded[1]
        kwargs = None if self.kwargs is None else self.kwargs[position]
        run_id = self.seed + run.to_bytes(4, "big")
        args = (self.calls[position],) if self.single else self.calls[position]
        arguments = _Arguments(args, kwargs)
        return (_RunIdentity(run_id), name, task, self.flow_context, run_count, arguments)

    @property
    def future(self) -> Any:
        return self.current[0]

    @contextlib.contextmanager
    def entered(self) -> Generator[None, None, None]:
        """The segment's runs are the current run of this thread meanwhile."""
        token = current_async_run.set(self)
        try:
            yield
        finally:
            current_async_run.reset(token)


def run_coroutine(coroutine: Any) -> Any:
    """Runs a coroutine a task's function returned to its end, on an event loop of its own."""
    import asyncio

    awaitable: Coroutine[Any, Any, Any] = coroutine
    return asyncio.run(awaitable)


class _RunIdentity:
    """What the run context reads of a run's future: its id."""

    __slots__ = ("_id",)

    def __init__(self, run_id: bytes) -> None:
        self._id = run_id

    @property
    def task_run_id(self) -> uuid.UUID:
        return uuid.UUID(bytes=self._id)


class _Arguments:
    """A run's arguments, as `TaskRunContext.parameters` asks for them."""

    __slots__ = ("_args", "_kwargs")

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> None:
        self._args, self._kwargs = args, kwargs

    def resolved(self) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
        return self._args, self._kwargs




# -- the flow run a run belongs to ----------------------------------------------------------


class FlowRuns:
    """The flow runs whose runs a worker executes, each as a context made once (with the
    flow's name, run id and name, `log_prints`, logger). Its task runner is a thread pool
    of this worker: tasks a run calls, submits or maps execute here, in the worker.

    A worker keeps the contexts of its `keep` latest flow runs (a process pool's worker
    serves one at a time; a Dask or Ray worker may serve several at once); an older one's
    runner stops when it is dropped (its nested runs end first)."""

    def __init__(self, nested_runner: Callable[[], Any], keep: int = 1) -> None:
        self._nested_runner = nested_runner
        self._keep = keep
        self._lock = threading.Lock()
        self._contexts: OrderedDict[FlowRunIdentity, Any] = OrderedDict()

    def context(self, flow_run: FlowRunIdentity | None) -> Any:
        if flow_run is None:
            return None
        with self._lock:
            context = self._contexts.get(flow_run)
            if context is not None:
                self._contexts.move_to_end(flow_run)
                return context
            context = self._make(flow_run)
            self._contexts[flow_run] = context
            dropped = self._contexts.popitem(last=False)[1] if len(self._contexts) > self._keep else None
        if dropped is not None:
            dropped.task_runner._stop()
        return context

    def _make(self, flow_run: FlowRunIdentity) -> Any:
        from ferroflow.context import FlowRun, FlowRunContext
        from ferroflow.logging import flow_run_logger

        flow_name, run_id, run_name, log_prints = flow_run
        logger = flow_run_logger(run_name, flow_name=flow_name, flow_run_id=run_id)
        context = FlowRunContext(_Named(flow_name), FlowRun(run_id, run_name, {}), None, log_prints, logger)
        runner = self._nested_runner()
        runner._start(context)
        context.task_runner = runner
        return context


class _Named:
    """A flow as a run context in a worker shows it: by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


# -- log records: kept in the worker, handled in the flow's process -------------------------

#: Where the records of the run this thread executes go (`collected_records`); records
#: made elsewhere go to the worker's shared list.
_run_records: contextvars.ContextVar[list[dict[str, Any]] | None] = contextvars.ContextVar(
    "ferroflow_run_records", default=None
)


def capture_run_logs() -> list[dict[str, Any]]:
    """From now on run log records (the `ferroflow` loggers') of this worker process are
    kept, not printed, and `print` follows each run's `log_prints`. Returns the list that
    receives the records made outside `collected_records` (a process pool's worker
    sends it with each chunk's outcomes). Call once per process."""
    from ferroflow._prints import enable_print_capture

    records: list[dict[str, Any]] = []
    logger = logging.getLogger("ferroflow")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(_Keep(records))
    enable_print_capture()
    return records


@contextlib.contextmanager
def collected_records() -> Generator[list[dict[str, Any]]]:
    """The records this thread's code makes meanwhile go to the list it gives (a Dask or
    Ray worker sends each run's own with its outcome)."""
    records: list[dict[str, Any]] = []
    token = _run_records.set(records)
    try:
        yield records
    finally:
        _run_records.reset(token)


class _Keep(logging.Handler):
    """Keeps records as plain dicts the flow's process can rebuild (`emit_records`)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__()
        self._records = records

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        fields = {key: value for key, value in vars(record).items() if isinstance(value, _PLAIN)}
        fields["msg"] = record.getMessage()
        fields["args"] = None
        fields["exc_info"] = None
        sink = _run_records.get()
        (self._records if sink is None else sink).append(fields)


_PLAIN = (str, int, float, bool, type(None), uuid.UUID)


def emit_records(records: list[dict[str, Any]]) -> None:
    """Hands records kept in a worker to this process's handlers, as if made here."""
    for fields in records:
        record = logging.makeLogRecord(fields)
        logging.getLogger(record.name).handle(record)


# -- exceptions ------------------------------------------------------------------------------


def describe(exc: BaseException) -> tuple[BaseException | None, str, str]:
    """(the exception if it pickles, else None; its type and message; its traceback text)."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.dumps(exc, PROTOCOL)
    except Exception:
        return None, exception_text(exc), text
    return exc, exception_text(exc), text


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


# -- a run in a cluster worker (Dask, Ray) ----------------------------------------------------

#: What `run_in_cluster_worker` gives: the run's value; the exception it raised; a State
#: it returned (which the engine in the flow's process must read, so it travels there).
RETURNED, RAISED, RETURNED_STATE = 0, 1, 2


class _ClusterWorker:
    """What a cluster worker process keeps between runs: the tasks it loaded (by their
    definition's key), the flow runs it serves, and whether it keeps run log records."""

    #: Flow runs a cluster worker keeps contexts for (it may serve several at once).
    FLOW_RUNS_KEPT = 16
    #: Tasks a cluster worker keeps loaded (each flow run ships its tasks under new keys:
    #: a long-lived worker forgets the least recently used).
    TASKS_KEPT = 256

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: OrderedDict[str, LoadedTask] = OrderedDict()
        self.flow_runs: FlowRuns | None = None
        #: The records made outside any run's `collected_records`, once capture is on.
        self.stray_records: list[dict[str, Any]] | None = None

    def prepare(self, nested_runner: Callable[[], Any], flow_pid: int) -> FlowRuns:
        with self.lock:
            if self.flow_runs is None:
                import os

                # A worker in the flow's own process (a cluster of threads) logs as the
                # flow does; a worker process keeps the records for the flow's process.
                if os.getpid() != flow_pid:
                    self.stray_records = capture_run_logs()
                self.flow_runs = FlowRuns(nested_runner, keep=self.FLOW_RUNS_KEPT)
            return self.flow_runs

    def task(self, key: str, blob: bytes) -> LoadedTask:
        with self.lock:
            loaded = self.tasks.get(key)
            if loaded is not None:
                self.tasks.move_to_end(key)
                return loaded
        loaded = load_task(blob)  # (outside the lock: unpickling may import modules)
        with self.lock:
            self.tasks[key] = loaded
            if len(self.tasks) > self.TASKS_KEPT:
                self.tasks.popitem(last=False)
        return loaded

    def take_stray_records(self) -> list[dict[str, Any]]:
        stray = self.stray_records
        if not stray:
            return []
        taken = stray[:]
        del stray[: len(taken)]
        return taken


_cluster_worker = _ClusterWorker()


def run_in_cluster_worker(
    definition: tuple[str, bytes],
    flow_run: FlowRunIdentity | None,
    identity: tuple[str, int, bytes],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    flow_pid: int,
    nested_runner: Callable[[], Any],
) -> tuple[int, Any, list[dict[str, Any]]]:
    """Executes one run in a cluster worker: `definition` is the task's `(key, cloudpickled
    task)` (loaded once per worker process), `flow_pid` the flow's process id, and
    `nested_runner` makes the runner of runs that the task calls, submits or maps here.
    Returns `(RETURNED | RAISED | RETURNED_STATE, the value, exception or State, the log
    records the run made)` (records are kept only in a process other than the flow's)."""
    flow_runs = _cluster_worker.prepare(nested_runner, flow_pid)
    key, blob = definition
    loaded = _cluster_worker.task(key, blob)
    data: Any
    with collected_records() as records:
        if isinstance(loaded, BaseException):
            kind, data = RAISED, RuntimeError(
                f"the task's function could not be loaded in the cluster worker: {exception_text(loaded)}"
            )
        else:
            try:
                data = execute(loaded, args, kwargs, identity, flow_runs.context(flow_run))
            except Exception as exc:
                kind, data = RAISED, exc
            else:
                kind = RETURNED_STATE if _is_state(data) else RETURNED
    return kind, data, records + _cluster_worker.take_stray_records()


def _is_state(value: Any) -> bool:
    states = sys.modules.get("ferroflow.states")
    return states is not None and isinstance(value, states.State)
