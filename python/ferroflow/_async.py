"""Async tasks and flows: where coroutine runs execute, and how futures are awaited.

- A submitted task whose coroutine may suspend runs as an asyncio task on its flow run's
  background event loop (one loop and thread per flow run, made on first use), so a
  blocking `.result()` on the flow's own loop cannot starve it. The engine hands such
  runs over in batches: one `call_soon_threadsafe` per batch, not per run. (A coroutine
  whose code cannot suspend runs to completion in the engine's executor instead: see
  `TaskSpec`'s body.)
- `await task(x)` runs the coroutine on the caller's own loop, as Prefect does.
- Futures are awaitable: a run finishing in the engine wakes the awaiting loop through
  a done-callback; wake-ups for one loop are coalesced into one `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Iterable

from ferroflow._core import AsyncRun, contains_futures
from ferroflow.context import FlowRunContext, current_async_run
from ferroflow.futures import _replace_futures
from ferroflow.logging import get_logger

if TYPE_CHECKING:
    from ferroflow.task_runners import TaskRunner
    from ferroflow.tasks import Task


class RunLoop:
    """An event loop running on its own thread, for the coroutine runs of a flow run."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start_runs(self, runs: list[AsyncRun]) -> None:
        self.loop.call_soon_threadsafe(_start_runs, runs)

    def close(self) -> None:
        """Stops the loop once its runs are done (the flow run waited for them) and joins it."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


_default_loop_lock = threading.Lock()
_default_loop: RunLoop | None = None


def _loop_for(context: FlowRunContext | None) -> RunLoop:
    """The flow run's loop, or outside flows the process-wide one."""
    global _default_loop
    if context is not None:
        return context.run_loop()
    with _default_loop_lock:
        if _default_loop is None or _default_loop.loop.is_closed():
            _default_loop = RunLoop("ferroflow-event-loop")
        return _default_loop


def schedule_coroutines(context: FlowRunContext | None, runs: list[AsyncRun]) -> None:
    """Called by the engine once per batch, from an engine thread."""
    _loop_for(context).start_runs(runs)


def _start_runs(runs: list[AsyncRun]) -> None:
    loop = asyncio.get_running_loop()
    for run in runs:
        # Each run's task sees itself as the current run (get_run_logger, nested submits).
        context = contextvars.copy_context()
        context.run(current_async_run.set, run)
        loop.create_task(_attempts(run), context=context)


async def _attempts(run: AsyncRun) -> None:
    """Runs a coroutine run to its end, retrying in place as the task's policy says."""
    while True:
        try:
            value = await run.start()
        except asyncio.CancelledError:
            run.cancel()
            raise
        except BaseException as exc:  # the run records it; nothing escapes into the loop
            delay = run.fail(exc)
        else:
            delay = run.complete(value)
        if delay is None:
            return
        await asyncio.sleep(delay)
        run.retrying()


async def call_inline(task: Task, args: tuple, kwargs: dict[str, Any], wait_for: Iterable[Any] | None, return_state: bool) -> Any:
    """`await task(x)`: the run executes on the caller's loop, after its upstreams."""
    if wait_for is not None:
        wait_for = list(wait_for)
    # Upstream futures are awaited here, so the loop is never blocked on them.
    for future in _futures_in((args, kwargs, wait_for)):
        await await_future_done(future)
    context = FlowRunContext.get()
    runner = _runner_for(context)
    run = runner._claim_call(task, args, kwargs, wait_for, context is None)
    if not run.done:
        token = current_async_run.set(run)
        try:
            await _attempts(run)
        finally:
            current_async_run.reset(token)
    future = run.future
    return future.state if return_state else future.result()


def _runner_for(context: FlowRunContext | None) -> TaskRunner:
    from ferroflow.task_runners import default_runner

    return default_runner() if context is None else context.task_runner


def _futures_in(expr: Any) -> list[Any]:
    """The futures inside `expr`, found by the walk that resolves them."""
    found: list[Any] = []
    if contains_futures(expr):
        _replace_futures(expr, found.append)
    return found


class _Waker:
    """Wakes waiters on one loop from any thread; a burst of wake-ups costs one
    `call_soon_threadsafe` (one write to the loop's self-pipe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._ready: list[asyncio.Future[None]] = []

    def wake(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            self._ready.append(waiter)
            if len(self._ready) > 1:
                return  # a drain is already scheduled
        try:
            self._loop.call_soon_threadsafe(self._drain)
        except RuntimeError:
            pass  # the loop closed; nobody is left to wake

    def _drain(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
        for waiter in ready:
            if not waiter.done():
                waiter.set_result(None)


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Waker] = weakref.WeakKeyDictionary()
_wakers_lock = threading.Lock()


def _waker_for(loop: asyncio.AbstractEventLoop) -> _Waker:
    with _wakers_lock:
        waker = _wakers.get(loop)
        if waker is None:
            waker = _wakers[loop] = _Waker(loop)
        return waker


async def await_future_done(future: Any) -> None:
    """Waits, without blocking the loop, until `future`'s run is final. Cancelling the
    wait cancels the run if it has not started; a started run goes on."""
    if future.done():
        return
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    waker = _waker_for(loop)
    future.add_done_callback(lambda _future: waker.wake(waiter))
    try:
        await waiter
    except asyncio.CancelledError:
        future._cancel_if_pending()
        raise


async def await_future(future: Any) -> Any:
    """`await future`."""
    await await_future_done(future)
    return future.result()


async def await_future_list(futures: Any) -> list[Any]:
    """`await futures` (a map's list): all results, in order. The engine calls back once,
    when the last run is done, not once per run."""
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    waker = _waker_for(loop)
    futures._when_all_done(lambda: waker.wake(waiter))
    try:
        await waiter
    except asyncio.CancelledError:
        for future in futures:
            future._cancel_if_pending()
        raise
    return futures.result()


class FlowCall(collections.abc.Coroutine):
    """What calling an async flow returns: a coroutine that starts the flow run when it
    is first driven (awaited, or run by `asyncio.run`).

    Never driven means never run. The usual cause is `asyncio.run(my_flow())` where an
    event loop is already running (a notebook): asyncio refuses before the flow starts.
    When such a call is dropped, ferroflow says what to write instead."""

    __slots__ = ("_name", "_make", "_coroutine", "_closed")

    def __init__(self, name: str, make: Any) -> None:
        self._name = name
        self._make = make
        self._coroutine: Any = None
        self._closed = False

    def _started(self) -> Any:
        if self._coroutine is None:
            self._coroutine = self._make()
        return self._coroutine

    def send(self, value: Any) -> Any:
        return self._started().send(value)

    def throw(self, *exc_info: Any) -> Any:
        return self._started().throw(*exc_info)

    def close(self) -> None:
        self._closed = True
        if self._coroutine is not None:
            self._coroutine.close()

    def __await__(self) -> Any:
        return self._started().__await__()

    def __del__(self) -> None:
        if self._coroutine is not None or self._closed or sys.is_finalizing():
            return
        running = asyncio._get_running_loop() is not None
        if running:
            advice = "an event loop is already running here (a notebook?), so `asyncio.run()` cannot be used: write `await {0}(...)`"
        else:
            advice = "call `asyncio.run({0}(...))`, or `await {0}(...)` in async code,"
        get_logger().error(f"Async flow {self._name!r} was called but its run never started: {advice.format(self._name)} to run it.")
