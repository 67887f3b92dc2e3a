"""Async concurrency: no event loop is blocked while runs wait, coroutine runs start
without waiting for unrelated sync runs, cancelling an awaiting coroutine cancels a run
that has not started (and only that), the one-time warning for a blocking `.result()`
on a running loop, a clear error when an async flow cannot be started, and Ctrl-C
during an async flow.

Waits are bounded by events and timeouts, never by the sleeps of the tasks.
"""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.task_runners import ThreadPoolTaskRunner

WARNING_LINE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} \| WARNING \| ferroflow - (?P<message>.*called inside a running event loop.*)$",
    re.MULTILINE,
)


def run(coroutine, seconds: float = 15.0):
    """``asyncio.run`` with a deadline, so that a hang fails the test instead of the suite."""

    async def bounded():
        return await asyncio.wait_for(coroutine, seconds)

    return asyncio.run(bounded())


@task
def nap(i):
    time.sleep(0.2)
    return i


class Heartbeat:
    """A coroutine ticking every 10 ms on the loop that starts it: it only ticks while
    that loop is free."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task | None = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def __aenter__(self) -> Heartbeat:
        self._task = asyncio.ensure_future(self._beat())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()


# no loop blocked ------------------------------------------------------------------------


def test_heartbeat_ticks_while_sync_tasks_are_awaited():
    @flow
    async def f():
        ticks = {}
        async with Heartbeat() as heart:
            start = heart.ticks
            gathered = await asyncio.gather(*[nap.submit(i) for i in range(4)])
            ticks["gather"] = heart.ticks - start
            start = heart.ticks
            mapped = await nap.map(range(4))
            ticks["map"] = heart.ticks - start
            start = heart.ticks
            single = await nap.submit(9)
            ticks["single"] = heart.ticks - start
        return gathered, mapped, single, ticks

    gathered, mapped, single, ticks = run(f())
    assert (gathered, mapped, single) == ([0, 1, 2, 3], [0, 1, 2, 3], 9)
    # Each wait lasts at least 0.2 s: about 20 ticks of 10 ms on a free loop, 0 on a blocked one.
    assert all(count >= 5 for count in ticks.values()), ticks


def test_heartbeat_ticks_while_an_async_flow_waits_for_its_runs_at_exit():
    # The flow returns without awaiting its runs; it waits for them before it finishes,
    # on a helper thread, so the caller's loop keeps running.
    @flow
    async def f():
        for i in range(3):
            nap.submit(i)

    async def main():
        async with Heartbeat() as heart:
            started = time.monotonic()
            await f()
            waited = time.monotonic() - started
            return heart.ticks, waited

    ticks, waited = run(main())
    assert waited >= 0.15, "the flow waited for its runs"
    assert ticks >= 5, ticks


def test_a_sync_task_called_directly_in_an_async_flow_blocks_the_loop():
    # As in Prefect: a direct call runs inline, on the loop's thread.
    @task
    def short_nap():
        time.sleep(0.1)

    @flow
    async def f():
        async with Heartbeat() as heart:
            start = heart.ticks
            short_nap()
            return heart.ticks - start

    assert run(f()) == 0


def _interleaved_submits(gate: threading.Event):
    """Submits sync runs that block until `gate` is set, each followed by a suspending
    coroutine run; returns the coroutine runs' futures."""

    @task
    def blocked(i):
        gate.wait(10)
        return i

    @task
    async def quick(i):
        await asyncio.sleep(0)
        return i

    futures = []
    for i in range(3):
        blocked.submit(i)
        futures.append(quick.submit(i))
    return futures


def test_coroutine_runs_do_not_wait_for_sync_runs_in_an_async_flow(gate):
    # Nothing relates the coroutine runs to the blocked sync runs: they must finish
    # while those are still blocked.
    @flow
    async def f():
        futures = _interleaved_submits(gate)
        try:
            return await asyncio.wait_for(asyncio.gather(*futures), 3)
        finally:
            gate.set()

    assert run(f()) == [0, 1, 2]


def test_coroutine_runs_do_not_wait_for_sync_runs_in_a_sync_flow(gate):
    @flow
    def f():
        futures = _interleaved_submits(gate)
        try:
            return [future.result(timeout=3) for future in futures]
        finally:
            gate.set()

    assert f() == [0, 1, 2]


def test_submitted_coroutine_without_await_sees_a_running_loop():
    # A coroutine with no `await` may still use the loop it runs on (as it can under
    # Prefect, where a submitted async task runs in `asyncio.run`, and as it can when
    # awaited inline).
    @task
    async def loop_user(x):
        return asyncio.get_running_loop() is not None, asyncio.current_task() is not None

    @flow
    async def async_flow():
        return await loop_user(0), await loop_user.submit(0), await loop_user.map([1])

    @flow
    def sync_flow():
        return loop_user.submit(0).result(), loop_user.map([1]).result()

    assert run(async_flow()) == ((True, True), (True, True), [(True, True)])
    assert sync_flow() == ((True, True), [(True, True)])
    assert loop_user.submit(0).result() == (True, True)


# cancellation -------------------------------------------------------------------------------


def test_cancelling_the_awaiter_cancels_a_run_that_has_not_started(gate):
    ran = threading.Event()

    @task
    def slow_upstream():
        gate.wait(10)
        return "up"

    @task
    async def waits_on_an_event(event_box):
        ran.set()
        await event_box["event"].wait()
        return "ran"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def f():
        upstream = slow_upstream.submit()
        box = {"event": asyncio.Event()}  # never set: the run must never start
        run_future = waits_on_an_event.submit(box, wait_for=[upstream])
        awaiting_started = asyncio.Event()

        async def awaiter():
            awaiting_started.set()
            return await run_future

        awaiting = asyncio.ensure_future(awaiter())
        await awaiting_started.wait()  # it is suspended in `await run_future`
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        gate.set()  # the upstream finishes; the cancelled run must not start
        await upstream
        await asyncio.to_thread(run_future.wait, 5)
        return {"state": run_future.state, "upstream": upstream.state}

    states = run(f())
    assert states["state"].is_cancelled(), states
    assert states["state"].message == "The run was cancelled before it started."
    assert states["upstream"].is_completed()
    assert not ran.is_set(), "a cancelled run never executes"


def test_cancelling_the_awaiter_leaves_a_started_run_alone():
    started, release = threading.Event(), threading.Event()

    @task
    async def held():
        started.set()
        await asyncio.to_thread(release.wait, 10)
        return "kept"

    @flow
    async def f():
        future = held.submit()
        awaiting = asyncio.ensure_future(asyncio.wait_for(future, 10))
        await asyncio.to_thread(started.wait, 10)
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        release.set()
        return {"value": await future, "state": future.state}

    outcome = run(f())
    assert outcome["value"] == "kept"
    assert outcome["state"].is_completed()


def test_cancelling_the_awaiter_of_a_map_cancels_its_unstarted_runs(gate):
    @task
    def slow_upstream():
        gate.wait(10)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def f():
        upstream = slow_upstream.submit()
        futures = nap.map(range(5), wait_for=[upstream])
        awaiting_started = asyncio.Event()

        async def awaiter():
            awaiting_started.set()
            return await futures

        awaiting = asyncio.ensure_future(awaiter())
        await awaiting_started.wait()  # it is suspended in `await futures`
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting
        gate.set()
        await asyncio.to_thread(futures.wait, 5)
        return {"states": [future.state.name for future in futures]}

    assert run(f())["states"] == ["Cancelled"] * 5


def test_timeout_of_asyncio_wait_for_cancels_the_unstarted_run(gate):
    @task
    def slow_upstream():
        gate.wait(10)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def f():
        upstream = slow_upstream.submit()
        later = nap.submit(1, wait_for=[upstream])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(later, 0.05)
        gate.set()
        await asyncio.to_thread(later.wait, 5)
        return {"state": later.state.name}

    assert run(f())["state"] == "Cancelled"


# the blocking-.result() warning -----------------------------------------------------------------


def test_blocking_result_in_a_running_loop_warns_once(run_script):
    proc = run_script(
        """
        import asyncio
        from ferroflow import flow, task

        @task
        async def slow(x):
            await asyncio.sleep(0.05)
            return x

        @flow
        async def f():
            first = slow.submit(1).result()       # blocks the loop: warns
            slow.submit(2).wait()                 # again: no second warning
            mapped = slow.map([3, 4]).result()    # nor here
            return first, mapped

        @flow
        def g():
            return slow.submit(5).result()        # no running loop here

        print(asyncio.run(f()), asyncio.run(f()), g())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "(1, [3, 4]) (1, [3, 4]) 5\n"
    warnings = WARNING_LINE.findall(proc.stderr)
    assert len(warnings) == 1, proc.stderr
    assert "blocks the loop" in warnings[0] and "`await`" in warnings[0], warnings[0]


def test_no_warning_in_a_sync_flow_or_outside_a_loop(run_script):
    proc = run_script(
        """
        from ferroflow import flow, task

        @task
        async def slow(x):
            import asyncio
            await asyncio.sleep(0.05)
            return x

        @flow
        def g():
            return slow.submit(1).result(), slow.map([2]).result()

        print(g(), slow.submit(3).result())
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "(1, [2]) 3\n"
    assert "WARNING" not in proc.stderr, proc.stderr


def test_awaiting_futures_never_warns_about_blocking(run_script):
    # `await` is the advice of the warning: awaiting a future, a gather of futures or a
    # map's future list (pending or done) must not log it.
    proc = run_script(
        """
        import asyncio, time
        from ferroflow import flow, task

        @task
        async def slow(x):
            await asyncio.sleep(0.05)
            return x

        @task
        def nap(x):
            time.sleep(0.05)
            return x

        @flow
        async def f():
            a = await slow.submit(1)
            b = await asyncio.gather(slow.submit(2), nap.submit(3))
            c = await slow.map([4, 5])
            d = await nap.map([6, 7])
            done = nap.map([8])
            await asyncio.sleep(0.2)
            e = await done
            return a, b, c, d, e

        print(asyncio.run(f()))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "(1, [2, 3], [4, 5], [6, 7], [8])\n"
    assert not WARNING_LINE.search(proc.stderr), proc.stderr


# an async flow that cannot start ------------------------------------------------------------------


def test_asyncio_run_of_a_flow_inside_a_running_loop_says_to_await_it(run_script):
    # Seed 000 ran `asyncio.run(async_flow())` in a notebook, where a loop is running.
    proc = run_script(
        """
        import asyncio, gc
        from ferroflow import flow

        ran = []

        @flow
        async def async_flow():
            ran.append(1)

        async def notebook_cell():
            try:
                asyncio.run(async_flow())
            except RuntimeError as exc:
                print("RuntimeError:", exc)
            gc.collect()
            await async_flow()   # what the message says to write

        asyncio.run(notebook_cell())
        print("ran", len(ran))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "RuntimeError: asyncio.run() cannot be called from a running event loop\nran 1\n"
    errors = [line for line in proc.stderr.splitlines() if "| ERROR   |" in line]
    assert len(errors) == 1, proc.stderr
    assert "'async_flow'" in errors[0] and "never started" in errors[0], errors[0]
    assert "await async_flow(" in errors[0], errors[0]


# Ctrl-C ----------------------------------------------------------------------------------------------

INTERRUPTED_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from ferroflow import flow, task
    from ferroflow.task_runners import ThreadPoolTaskRunner

    @task
    def nap(i):
        time.sleep(0.2)
        return i

    @task
    async def anap(i):
        await asyncio.sleep(0.2)
        return i

    @task
    async def held():
        await asyncio.sleep(0.5)
        return "kept"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def sleepy():
        running = held.submit()
        naps = nap.map(range(200))
        later = anap.map(range(50), wait_for=[naps])
        await asyncio.sleep(0.05)
        print("started", flush=True)
        return await later, await running

    try:
        asyncio.run(sleepy())
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_during_an_async_flow_cancels_pending_runs_and_propagates():
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.2)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
        took = time.monotonic() - interrupted_at
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "interrupted" in out
    # 200 naps of 0.2 s on 2 workers would take 20 s: the flow ended promptly.
    assert took < 5, f"took {took:.1f} s after SIGINT"
    lines = err.splitlines()
    naps = [line for line in lines if "Mapped task 'nap': 200 runs finished" in line]
    assert len(naps) == 1 and "Cancelled" in naps[0], err
    anaps = [line for line in lines if "Mapped task 'anap': 50 runs finished" in line]
    assert len(anaps) == 1 and "50 Cancelled" in anaps[0], err
    # The coroutine run that had started went on and completed.
    assert any("Task run 'held-0' - Finished in state Completed()" in line for line in lines), err
    assert "Crash detected!" in err
    assert "Finished in state Crashed(" in err
    assert sum("Finished in state Cancelled(" in line for line in lines) <= 40


def test_max_workers_1_cannot_deadlock_coroutine_runs_awaiting_each_other(call_with_deadline):
    # Coroutine runs count against max_workers; one that awaits other runs is suspended
    # from the count meanwhile, so the runs it waits for can start.

    @task
    async def leaf(i):
        await asyncio.sleep(0.01)
        return i

    @task
    async def parent(i):
        await asyncio.sleep(0)
        return await leaf.submit(i) + sum(await leaf.map(range(3)))

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        return parent.map(range(4)).result()

    assert call_with_deadline(f, 10) == [3, 4, 5, 6]
