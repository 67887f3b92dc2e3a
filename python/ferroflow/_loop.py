"""Where coroutine runs execute: an event loop on its own thread, and the driver that
takes one claimed run through its attempts.

A task runner that runs its coroutine runs on threads of this process owns one `RunLoop`
(made on first use, closed after its runs have ended); the engine hands it claimed runs
in batches. `drive(run)` is the same driver for a run awaited inline on the caller's loop
(`await task(x)`). asyncio is imported when a loop is made, never by `import ferroflow`.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from typing import TYPE_CHECKING, Any

from ferroflow._bridge import crash
from ferroflow.context import current_async_run
from ferroflow.logging import get_logger

if TYPE_CHECKING:
    from ferroflow._core import AsyncRun


class RunLoop:
    """An event loop running on its own thread, for the coroutine runs of one runner.
    (How many of them execute at once is the engine's to say: it hands over no more
    than `max_workers`.)"""

    def __init__(self, name: str) -> None:
        import asyncio

        self.name = name
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # The runner's runs have ended: what is left was started by user code and
            # never awaited. It is cancelled, and said so: nothing ends silently.
            pending = asyncio.all_tasks(self.loop)
            if pending:
                get_logger().warning(
                    f"{len(pending)} asyncio task(s) still pending on event loop {self.name!r} "
                    "were cancelled when it closed"
                )
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self, runs: list[AsyncRun]) -> None:
        """Starts each run as an asyncio task on the loop, in one thread-safe call."""
        self.loop.call_soon_threadsafe(_start_runs, runs)

    def interrupt(self) -> None:
        """Ctrl-C: runs waiting out a retry delay end Cancelled now, and so does every run
        whose attempt fails from now on; attempts under way finish."""
        try:
            self.loop.call_soon_threadsafe(_interrupt_loop)
        except RuntimeError:
            pass  # the loop has closed: nothing runs on it

    def close(self) -> None:
        """Stops the loop (its runs have ended: the runner waited for them) and joins it."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        self._thread.join()


def _start_runs(runs: list[AsyncRun]) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    for run in runs:
        try:
            # Each run executes in a copy of its submitter's contextvars (as in Prefect),
            # where it is the current run (get_run_logger, nested submits).
            # `context.run(create_task)` gives the task that context on every Python:
            # `create_task(..., context=)` exists only from 3.11.
            submitted = run.context
            context = contextvars.copy_context() if submitted is None else submitted.copy()
            context.run(current_async_run.set, run)
            context.run(loop.create_task, drive(run))
        except BaseException as exc:  # nothing may leave a run Running
            crash(run, exc)


# Drivers waiting out a retry delay, and loops interrupted (Ctrl-C): a run of such a loop
# does not wait for another attempt. Weak: an ended task or a closed loop leaves by itself.
_retry_waits: weakref.WeakSet[Any] = weakref.WeakSet()
_interrupted_loops: weakref.WeakSet[Any] = weakref.WeakSet()


def _interrupt_loop() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    _interrupted_loops.add(loop)
    for task in list(_retry_waits):
        if task.get_loop() is loop:
            task.cancel()


async def drive(run: AsyncRun) -> None:
    """Runs a coroutine run to its end, retrying in place as the task's policy says.
    Cancelled during an attempt or during a retry delay, the run ends Cancelled."""
    import asyncio

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
        if asyncio.get_running_loop() in _interrupted_loops:
            run.cancel()  # Ctrl-C: no further attempt
            return
        waiting = asyncio.current_task()
        _retry_waits.add(waiting)
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            run.cancel()  # cancelled while waiting out the delay: the run ends here
            raise
        finally:
            _retry_waits.discard(waiting)
        run.retrying()
