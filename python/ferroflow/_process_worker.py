"""The child side of `ProcessPoolTaskRunner`: a warm worker process that executes chunks
of runs and sends their outcomes back.

The parent (`ferroflow._process_pool`) sends, over one pipe, messages of
`(definitions, flow_run, items, arguments)`:

- `definitions`: `(function_id, cloudpickled task)` for tasks this child has not seen
  yet (each crosses once per child; the worker builds from it the function the engine
  calls, options included);
- `flow_run`: `(flow name, flow run id, flow run name, log_prints)`, or None outside flows;
- `items`: `(key, function_id, (run name, run_count, task_run_id bytes))`;
- `arguments`: the pickled list of the items' `(args, kwargs)`, in order.

The child answers each message with one message: the outcomes in order, `(key, kind,
data)`, the chunk's elapsed time (which sizes later chunks), and the log records its
runs made, which the parent hands to its own handlers before it reports the runs' ends.
Before it executes an item it writes the item's key to `current` (shared memory), so
that if the process dies the parent knows which run it held.

Each run executes as the current run of the worker (`current_async_run`, as a run
carried to another thread): `get_run_logger()`, `TaskRunContext.get()`,
`ferroflow.runtime` and `log_prints` find it, with its name, run count, id and flow run.

This module is imported only in worker processes (and by the parent to name `serve`).
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any

#: What an outcome is: the function's value; its exception (pickled, with the traceback
#: text); or a failure described in text only (an exception or value that could not be
#: pickled, a function that could not be loaded).
VALUE, EXCEPTION, FAILURE = 0, 1, 2

#: `current` when the child executes nothing.
IDLE = -1

#: The first message a child sends: its initializer ran and it takes work.
READY = b"ready"

PROTOCOL = 5


def serve(connection: Any, current: Any, initializer: bytes | None, nested_runner: Callable[[], Any]) -> None:
    """The worker process's main loop, until the parent sends None or goes away.
    `initializer` is the cloudpickled `(initializer, initargs)`, run first;
    `nested_runner` makes the task runner of the runs that tasks here call, submit or
    map (the thread pool runner: given, so that this module imports no runner)."""
    import signal

    # Ctrl-C reaches the whole process group: the parent decides what happens to runs;
    # a child must not die of it mid-run (the parent terminates children itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    records = _forward_run_logs()
    if initializer is not None:
        try:
            function, args = pickle.loads(initializer)
            function(*args)
        except BaseException as exc:
            connection.send_bytes(pickle.dumps(("initializer", _describe(exc)), PROTOCOL))
            return
    connection.send_bytes(READY)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    # A thread of its own reads the pipe, so the parent's sends never wait on this
    # child's work (and the parent can read outcomes while it sends).
    threading.Thread(target=_receive, args=(connection, inbox), daemon=True, name="ferroflow-worker-inbox").start()
    functions: dict[int, tuple[Callable[..., Any], Any] | BaseException] = {}
    flow_runs = _FlowRuns(nested_runner)
    while (raw := inbox.get()) is not None:
        message = pickle.loads(raw)
        if message is None:
            return
        definitions, flow_run, items, arguments = message
        for function_id, blob in definitions:
            functions[function_id] = _load(blob)
        flow_context = flow_runs.context(flow_run)
        started = time.perf_counter()
        outcomes: list[tuple[int, int, Any]] = []
        try:
            calls: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = pickle.loads(arguments)
        except Exception as exc:
            text = f"its arguments could not be unpickled in the worker process: {_text(exc)}"
            outcomes = [(key, FAILURE, text) for key, _, _ in items]
        else:
            for (key, function_id, identity), (args, kwargs) in zip(items, calls, strict=True):
                current.value = key
                outcomes.append(_execute(key, functions[function_id], args, kwargs, identity, flow_context))
        current.value = IDLE
        # Taken, not copied and cleared: a nested run on another thread may log meanwhile,
        # and its record then travels with the next chunk.
        taken = records[:]
        del records[: len(taken)]
        connection.send_bytes(_dump_outcomes(outcomes, time.perf_counter() - started, taken))


def _receive(connection: Any, inbox: queue.SimpleQueue[bytes | None]) -> None:
    try:
        while True:
            inbox.put(connection.recv_bytes())
    except (EOFError, OSError):
        inbox.put(None)  # the parent is gone: the child ends


def _load(blob: bytes) -> tuple[Callable[..., Any], Any] | BaseException:
    """(what the engine calls for the task's runs, the task) from the pickled task."""
    from ferroflow._task_body import engine_function

    try:
        task = pickle.loads(blob)
        call, _ = engine_function(task)
    except BaseException as exc:
        return exc
    return call, task


def _execute(
    key: int,
    function: tuple[Callable[..., Any], Any] | BaseException,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    identity: tuple[str, int, bytes],
    flow_context: Any,
) -> tuple[int, int, Any]:
    if isinstance(function, BaseException):
        return key, FAILURE, f"the task's function could not be loaded in the worker process: {_text(function)}"
    from ferroflow.context import CarriedRun, current_async_run

    call, task = function
    name, run_count, run_id = identity
    run = CarriedRun((_RunIdentity(run_id), name, task, flow_context, run_count, _Arguments(args, kwargs)))
    token = current_async_run.set(run)
    try:
        value = call(*args, **(kwargs or {}))
        if _is_coroutine(value):
            import asyncio

            value = asyncio.run(value)
    except Exception as exc:
        return key, EXCEPTION, _describe(exc)
    finally:
        current_async_run.reset(token)
    return key, VALUE, value


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


class _FlowRuns:
    """The flow run the runs of a chunk belong to, as a context made once per flow run
    (a warm worker serves the flow runs of one runner configuration in turn). Its task
    runner is a thread pool of this worker: tasks a run calls, submits or maps execute
    here, in the worker."""

    def __init__(self, nested_runner: Callable[[], Any]) -> None:
        self._nested_runner = nested_runner
        self._last: tuple[Any, Any] | None = None

    def context(self, flow_run: tuple[str, Any, str, bool] | None) -> Any:
        if flow_run is None:
            return None
        if self._last is not None and self._last[0] == flow_run:
            return self._last[1]
        from ferroflow.context import FlowRun, FlowRunContext
        from ferroflow.logging import flow_run_logger

        if self._last is not None:
            self._last[1].task_runner._stop()  # the previous flow run's nested runs have ended
        flow_name, run_id, run_name, log_prints = flow_run
        logger = flow_run_logger(run_name, flow_name=flow_name, flow_run_id=run_id)
        context = FlowRunContext(_Named(flow_name), FlowRun(run_id, run_name, {}), None, log_prints, logger)
        runner = self._nested_runner()
        runner._start(context)
        context.task_runner = runner
        self._last = (flow_run, context)
        return context


class _Named:
    """A flow as a run context in a worker shows it: by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _forward_run_logs() -> list[dict[str, Any]]:
    """Run log records (the `ferroflow` loggers') are kept, not printed, and travel to
    the parent with the chunk's outcomes; `print` follows each run's `log_prints`."""
    import logging

    from ferroflow._prints import enable_print_capture

    records: list[dict[str, Any]] = []
    logger = logging.getLogger("ferroflow")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(_Keep(records))
    enable_print_capture()
    return records


class _Keep(logging.Handler):
    """Keeps records as plain dicts the parent can rebuild (`logging.makeLogRecord`)."""

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
        self._records.append(fields)


_PLAIN = (str, int, float, bool, type(None), uuid.UUID)


def rebuild_task(cls: type[Any], state: dict[str, Any]) -> Any:
    """A task as it crossed to the worker (see `ferroflow._process_pool`): its
    attributes, and its engine spec made again here."""
    task: Any = object.__new__(cls)
    task.__dict__.update(state)
    task._spec = task._make_spec()
    return task


def _is_coroutine(value: Any) -> bool:
    import inspect

    return inspect.iscoroutine(value)


def _describe(exc: BaseException) -> tuple[BaseException | None, str, str]:
    """(the exception if it pickles, else None; its type and message; its traceback text)."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.dumps(exc, PROTOCOL)
    except Exception:
        return None, _text(exc), text
    return exc, _text(exc), text


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _dump_outcomes(outcomes: list[tuple[int, int, Any]], elapsed: float, records: list[dict[str, Any]]) -> bytes:
    try:
        return pickle.dumps((outcomes, elapsed, records), PROTOCOL)
    except Exception:
        pass
    # Something in the chunk does not pickle: find it, and send a description instead.
    checked: list[tuple[int, int, Any]] = []
    for key, kind, data in outcomes:
        try:
            pickle.dumps(data, PROTOCOL)
        except Exception as exc:
            what = "its return value" if kind == VALUE else "its exception"
            data = f"{what} could not be pickled to return to the parent process: {_text(exc)}"
            kind = FAILURE
        checked.append((key, kind, data))
    return pickle.dumps((checked, elapsed, records), PROTOCOL)
