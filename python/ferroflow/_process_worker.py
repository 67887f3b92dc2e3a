"""The child side of `ProcessPoolTaskRunner`: a warm worker process that executes chunks
of runs and sends their outcomes back.

The parent (`ferroflow._process_pool`) sends, over one pipe, messages of
`(definitions, items)`: `definitions` are `(function_id, cloudpickled function)` pairs
for functions this child has not seen yet (each function crosses once per child), and
`items` are `(key, function_id, pickled (args, kwargs))`. The child answers each message
with one message of outcomes, in order, `(key, kind, data)`, plus the chunk's elapsed
time, which sizes later chunks. Before it executes an item it writes the item's key to
`current` (shared memory), so that if the process dies the parent knows which run it
held.

This module is imported only in worker processes (and by the parent to name `serve`).
"""

from __future__ import annotations

import pickle
import queue
import threading
import time
import traceback
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


def serve(connection: Any, current: Any, initializer: bytes | None) -> None:
    """The worker process's main loop, until the parent sends None or goes away.
    `initializer` is the cloudpickled `(initializer, initargs)`, run first."""
    import signal

    # Ctrl-C reaches the whole process group: the parent decides what happens to runs;
    # a child must not die of it mid-run (the parent terminates children itself).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    functions: dict[int, Callable[..., Any] | BaseException] = {}
    while (raw := inbox.get()) is not None:
        message = pickle.loads(raw)
        if message is None:
            return
        definitions, items = message
        for function_id, blob in definitions:
            functions[function_id] = _load(blob)
        started = time.perf_counter()
        outcomes: list[tuple[int, int, Any]] = []
        for key, function_id, payload in items:
            current.value = key
            outcomes.append(_execute(key, functions[function_id], payload))
        current.value = IDLE
        connection.send_bytes(_dump_outcomes(outcomes, time.perf_counter() - started))


def _receive(connection: Any, inbox: queue.SimpleQueue[bytes | None]) -> None:
    try:
        while True:
            inbox.put(connection.recv_bytes())
    except (EOFError, OSError):
        inbox.put(None)  # the parent is gone: the child ends


def _load(blob: bytes) -> Callable[..., Any] | BaseException:
    try:
        function: Callable[..., Any] = pickle.loads(blob)
    except BaseException as exc:
        return exc
    return function


def _execute(key: int, function: Callable[..., Any] | BaseException, payload: bytes) -> tuple[int, int, Any]:
    if isinstance(function, BaseException):
        return key, FAILURE, f"the task's function could not be loaded in the worker process: {_text(function)}"
    try:
        args, kwargs = pickle.loads(payload)
        value = function(*args, **(kwargs or {}))
        if _is_coroutine(value):
            import asyncio

            value = asyncio.run(value)
    except Exception as exc:
        return key, EXCEPTION, _describe(exc)
    return key, VALUE, value


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


def _dump_outcomes(outcomes: list[tuple[int, int, Any]], elapsed: float) -> bytes:
    try:
        return pickle.dumps((outcomes, elapsed), PROTOCOL)
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
    return pickle.dumps((checked, elapsed), PROTOCOL)
