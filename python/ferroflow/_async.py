"""Async tasks and flows: where coroutine runs execute, and how futures are awaited.

- A submitted task whose coroutine may suspend is claimed by the engine and handed, a
  batch at a time, to its runner (`RunnerEngine.hand_over` → `TaskRunner._execute`): the
  thread-pool runners run it as an asyncio task on their background event loop (one per
  flow run, made on first use: `ferroflow._loop`), so a blocking `.result()` on the
  flow's own loop cannot starve it. (A coroutine whose code cannot suspend runs to
  completion in the engine's executor instead: see `TaskSpec`'s body.)
- `await task(x)` runs the coroutine on the caller's own loop, as Prefect does.
- Futures are awaitable: a run finishing in the engine wakes the awaiting loop through
  a done-callback; wake-ups for one loop are coalesced into one `call_soon_threadsafe`.
  Under trio (anyio's trio backend) the done-callback wakes trio through its token.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ferroflow._core import PrefectConcurrentFuture, futures_in
from ferroflow._loop import drive
from ferroflow._task_runners import current_runner
from ferroflow.context import FlowRunContext, current_async_run

if TYPE_CHECKING:
    import asyncio


async def call_inline(
    task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Iterable[Any] | None, return_state: bool
) -> Any:
    """`await task(x)`: the run executes on the caller's loop, after its upstreams."""
    if wait_for is not None:
        wait_for = list(wait_for)
    # Upstream futures are awaited here, so the loop is never blocked on them.
    for future in _futures_in((args, kwargs, wait_for)):
        await await_future_done(future)
    context = FlowRunContext.get()
    run = current_runner()._claim_call(task, args, kwargs, wait_for, context is None)
    if not run.done:
        token = current_async_run.set(run)
        try:
            await drive(run)
        finally:
            current_async_run.reset(token)
    future = run.future
    return future.state if return_state else future.result()


def _futures_in(expr: Any) -> list[Any]:
    """The futures inside `expr`, found by the engine's one argument walk."""
    return futures_in(expr)


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


def _suspend_current_run() -> Any:
    """A coroutine run executed on its runner's loop counts against `max_workers` in the
    engine; while it awaits other runs it tells the engine so, and their runs can start
    even when such runs fill the bound (no deadlock at `max_workers=1`). Returns the run
    to resume afterwards, or None (not a counted run)."""
    run = current_async_run.get()
    return run if run is not None and run.suspend() else None


def _running_trio() -> Any:
    """The trio module if the calling code runs under trio (anyio's trio backend), else
    None. Looked up, never imported: code that does not use trio never loads it."""
    trio = sys.modules.get("trio")
    if trio is None:
        return None
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None and asyncio._get_running_loop() is not None:
        return None
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None
    return trio


async def _trio_wait(trio: Any, register: Any, cancel: Any) -> None:
    """Under trio: `register(wake)` arranges for `wake()` to be called from any thread
    when the runs are done; the engine wakes trio with its token, never by polling."""
    token = trio.lowlevel.current_trio_token()
    done = trio.Event()

    def wake(*_: Any) -> None:
        try:
            token.run_sync_soon(done.set)
        except trio.RunFinishedError:
            pass  # the trio run ended: nobody is left to wake

    register(wake)
    try:
        await done.wait()
    except trio.Cancelled:
        cancel()
        raise


async def await_future_done(future: Any) -> None:
    """Waits, without blocking the loop, until `future`'s run is final. Cancelling the
    wait cancels the run if it has not started; a started run goes on. Works on asyncio
    and on trio (anyio's either backend)."""
    if future.done():
        return
    trio = _running_trio()
    if trio is not None:
        return await _trio_wait(trio, future.add_done_callback, future._cancel_if_pending)
    suspended = _suspend_current_run()
    try:
        await _asyncio_wait(future)
    finally:
        if suspended is not None:
            suspended.resume()


async def _asyncio_wait(future: PrefectConcurrentFuture[Any]) -> None:
    import asyncio

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

    def cancel_unstarted() -> None:
        for future in futures:
            future._cancel_if_pending()

    trio = _running_trio()
    if trio is not None:
        await _trio_wait(trio, futures._when_all_done, cancel_unstarted)
    else:
        suspended = _suspend_current_run()
        try:
            await _asyncio_wait_all(futures, cancel_unstarted)
        finally:
            if suspended is not None:
                suspended.resume()
    results: list[Any] = futures.result()
    return results


async def _asyncio_wait_all(futures: Any, cancel_unstarted: Any) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    waker = _waker_for(loop)
    futures._when_all_done(lambda: waker.wake(waiter))
    try:
        await waiter
    except asyncio.CancelledError:
        cancel_unstarted()
        raise
