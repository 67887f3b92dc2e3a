"""The child side of `ProcessPoolTaskRunner`: a warm worker process that executes chunks
of runs and sends their outcomes back.

The parent (`ferroflow._process_pool`) sends, over one pipe, messages of
`(definitions, flow_run, key, segments, arguments)`:

- `definitions`: `(task_id, cloudpickled task)` for tasks this child has not seen yet
  (each crosses once per child; the worker builds from it the function the engine
  calls, options included);
- `flow_run`: `(flow name, flow run id, flow run name, log_prints)`, or None outside flows;
- `key`: the chunk's key;
- `segments`: runs of one task each, as `(task_id, count, single, identities, names,
  name, seed)`, whose runs' identities `SegmentRun` reads only when a run asks for its
  context;
- `arguments`: the pickled list of each segment's `(calls, kwargs)`: the runs'
  positional argument tuples (for a `single` segment, each run's one argument alone),
  and their keyword arguments (None when no run has any).

The child answers each message with one message: per segment `(values, failures)`,
the values in order (None where a run failed) and `(position, kind, data)` for each run
that did not return a value; the chunk's elapsed time (which sizes later chunks); and
the log records its runs made, which the parent hands to its own handlers before it
reports the runs' ends. Before it executes a run it writes the run's key, `key * MAX_CHUNK`
plus the run's position in the chunk, to `current` (shared memory), so that if the
process dies the parent knows which run it held.

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
from types import CoroutineType
from typing import Any

from ferroflow._worker_runs import (
    PROTOCOL,
    FlowRuns,
    LoadedTask,
    SegmentRun,
    capture_run_logs,
    describe,
    exception_text,
    load_task,
    run_coroutine,
)

#: What a failed run's outcome holds: its exception (pickled, with the traceback text); or
#: a failure described in text only (an exception or value that could not be pickled, a
#: function that could not be loaded). A run that returned has its value in order.
EXCEPTION, FAILURE = 1, 2

#: `current` when the child executes nothing.
IDLE = -1

#: The first message a child sends: its initializer ran and it takes work.
READY = b"ready"

#: Most runs in one chunk: the run keys one chunk spans.
MAX_CHUNK = 4096

#: A segment's outcome: its values in order, and `(position, kind, data)` per failed run.
Outcome = tuple[list[Any], list[tuple[int, int, Any]]]

__all__ = ["EXCEPTION", "FAILURE", "IDLE", "MAX_CHUNK", "PROTOCOL", "READY", "failed_outcome", "serve"]


def failed_outcome(count: int, text: str) -> Outcome:
    """The outcome of a segment of `count` runs that all failed for the reason `text`."""
    return [None] * count, [(position, FAILURE, text) for position in range(count)]


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
    tasks: dict[int, LoadedTask] = {}
    flow_runs = FlowRuns(nested_runner)
    while (raw := inbox.get()) is not None:
        message = pickle.loads(raw)
        if message is None:
            return
        definitions, flow_run, key, segments, arguments = message
        for task_id, blob in definitions:
            tasks[task_id] = load_task(blob)
        flow_context = flow_runs.context(flow_run)
        started = time.perf_counter()
        outcomes: list[Outcome] = []
        try:
            calls: list[tuple[list[tuple[Any, ...]], list[dict[str, Any] | None] | None]] = pickle.loads(arguments)
        except Exception as exc:
            text = f"its arguments could not be unpickled in the worker process: {exception_text(exc)}"
            for _, count, *_ in segments:
                outcomes.append(failed_outcome(count, text))
        else:
            run_key = key * MAX_CHUNK
            for (task_id, _, single, *identity), (args, kwargs) in zip(segments, calls, strict=True):
                run = SegmentRun(tasks[task_id], flow_context, args, kwargs, single, *identity)
                outcomes.append(_execute(run, current, run_key))
                run_key += len(args)
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


def _execute(run: SegmentRun, current: Any, run_key: int) -> Outcome:
    """Executes a segment's runs in order, each as the current run of this process."""
    loaded = run.loaded
    if isinstance(loaded, BaseException):
        text = f"the task's function could not be loaded in the worker process: {exception_text(loaded)}"
        return failed_outcome(len(run.calls), text)
    function = loaded[0]
    values: list[Any] = []
    failures: list[tuple[int, int, Any]] = []
    kwargs = run.kwargs
    single = run.single
    with run.entered():
        for position, args in enumerate(run.calls):
            current.value = run_key + position
            run.position = position
            try:
                keywords = None if kwargs is None else kwargs[position]
                if single:
                    value = function(args)
                elif keywords is None:
                    value = function(*args)
                else:
                    value = function(*args, **keywords)
                if type(value) is CoroutineType:
                    value = run_coroutine(value)
            except Exception as exc:
                failures.append((position, EXCEPTION, describe(exc)))
                value = None
            values.append(value)
    return values, failures


def _dump_outcomes(outcomes: list[Outcome], elapsed: float, records: list[dict[str, Any]]) -> bytes:
    try:
        return pickle.dumps((outcomes, elapsed, records), PROTOCOL)
    except Exception:
        pass
    # Something in the chunk does not pickle: find it, and send a description instead.
    checked: list[Outcome] = []
    for values, failures in outcomes:
        kept_failures: list[tuple[int, int, Any]] = []
        for position, kind, data in failures:
            try:
                pickle.dumps(data, PROTOCOL)
            except Exception as exc:
                text = f"its exception could not be pickled to return to the parent process: {exception_text(exc)}"
                kept_failures.append((position, FAILURE, text))
            else:
                kept_failures.append((position, kind, data))
        kept_values: list[Any] = []
        for position, value in enumerate(values):
            try:
                pickle.dumps(value, PROTOCOL)
            except Exception as exc:
                text = f"its return value could not be pickled to return to the parent process: {exception_text(exc)}"
                kept_failures.append((position, FAILURE, text))
                value = None
            kept_values.append(value)
        checked.append((kept_values, kept_failures))
    return pickle.dumps((checked, elapsed, records), PROTOCOL)
