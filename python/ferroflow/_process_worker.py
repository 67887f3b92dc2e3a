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

Each run executes as the current run of the worker, with its flow run's context and
its log records kept for the parent (`ferroflow._worker_runs`, shared with the Dask and
Ray workers).

This module is imported only in worker processes (and by the parent to name `serve`).
"""

from __future__ import annotations

import pickle
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ferroflow._worker_runs import (
    PROTOCOL,
    FlowRuns,
    LoadedTask,
    capture_run_logs,
    describe,
    exception_text,
    execute,
    load_task,
)

#: What an outcome is: the function's value; its exception (pickled, with the traceback
#: text); or a failure described in text only (an exception or value that could not be
#: pickled, a function that could not be loaded).
VALUE, EXCEPTION, FAILURE = 0, 1, 2

#: `current` when the child executes nothing.
IDLE = -1

#: The first message a child sends: its initializer ran and it takes work.
READY = b"ready"

__all__ = ["EXCEPTION", "FAILURE", "IDLE", "PROTOCOL", "READY", "VALUE", "serve"]


def serve(connection: Any, current: Any, initializer: bytes | None, nested_runner: Callable[[], Any]) -> None:
    """The worker process's main loop, until the parent sends None or goes away.
    `initializer` is the cloudpickled `(initializer, initargs)`, run first;
    `nested_runner` makes the task runner of the runs that tasks here call, submit or
    map (the thread pool runner: given, so that this module imports no runner)."""
    import signal

    # Ctrl-C reaches the whole process group: the parent decides what happens to runs;
    # a child must not die of it mid-run (the parent terminates children itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    records = capture_run_logs()
    if initializer is not None:
        try:
            function, args = pickle.loads(initializer)
            function(*args)
        except BaseException as exc:
            connection.send_bytes(pickle.dumps(("initializer", describe(exc)), PROTOCOL))
            return
    connection.send_bytes(READY)
    inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    # A thread of its own reads the pipe, so the parent's sends never wait on this
    # child's work (and the parent can read outcomes while it sends).
    threading.Thread(target=_receive, args=(connection, inbox), daemon=True, name="ferroflow-worker-inbox").start()
    functions: dict[int, LoadedTask] = {}
    flow_runs = FlowRuns(nested_runner)
    while (raw := inbox.get()) is not None:
        message = pickle.loads(raw)
        if message is None:
            return
        definitions, flow_run, items, arguments = message
        for function_id, blob in definitions:
            functions[function_id] = load_task(blob)
        flow_context = flow_runs.context(flow_run)
        started = time.perf_counter()
        outcomes: list[tuple[int, int, Any]] = []
        try:
            calls: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = pickle.loads(arguments)
        except Exception as exc:
            text = f"its arguments could not be unpickled in the worker process: {exception_text(exc)}"
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


def _execute(
    key: int,
    loaded: LoadedTask,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    identity: tuple[str, int, bytes],
    flow_context: Any,
) -> tuple[int, int, Any]:
    if isinstance(loaded, BaseException):
        return key, FAILURE, f"the task's function could not be loaded in the worker process: {exception_text(loaded)}"
    try:
        value = execute(loaded, args, kwargs, identity, flow_context)
    except Exception as exc:
        return key, EXCEPTION, describe(exc)
    return key, VALUE, value


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
            data = f"{what} could not be pickled to return to the parent process: {exception_text(exc)}"
            kind = FAILURE
        checked.append((key, kind, data))
    return pickle.dumps((checked, elapsed, records), PROTOCOL)
