"""Async tasks and flows: how they are called, where they run, awaitable futures, mixing
sync and async in both directions, subflows, states, retries and run loggers.

Concurrency, cancellation, the blocking-`.result()` warning and Ctrl-C are in
test_async_concurrency.py.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time

import anyio
import pytest

from ferroflow import flow, get_run_logger, task
from ferroflow.exceptions import CancelledRun
from ferroflow.futures import PrefectFutureList
from ferroflow.states import State
from ferroflow.task_runners import ThreadPoolTaskRunner

TS = r"\d\d:\d\d:\d\d\.\d{3}"


def task_line(level: str, run_name: str, message: str) -> re.Pattern:
    return re.compile(
        rf"^{TS} \| {level:<7} \| Task run {re.escape(repr(run_name))} - {re.escape(message)}$", re.MULTILINE
    )


def run(coroutine, seconds: float = 15.0):
    """``asyncio.run`` with a deadline, so that a hang fails the test instead of the suite."""

    async def bounded():
        return await asyncio.wait_for(coroutine, seconds)

    return asyncio.run(bounded())


@task
async def double(x):
    await asyncio.sleep(0)  # may suspend: a submitted run goes to the flow run's loop
    return 2 * x


@task
async def inc(x):  # cannot suspend: a submitted run completes in the engine's thread
    return x + 1


@task
def triple(x):
    return 3 * x


@task
async def where(_=None):
    """The thread and the loop a coroutine run executes on."""
    await asyncio.sleep(0)
    return threading.get_ident(), asyncio.get_running_loop()


# calling async flows and tasks ----------------------------------------------------------


def test_async_flow_called_returns_a_coroutine_that_runs_once_driven():
    ran = []

    @flow
    async def f(x):
        ran.append(x)
        return x * 10

    call = f(4)
    assert asyncio.iscoroutine(call)
    assert ran == [], "nothing runs until the coroutine is driven"
    assert run(call) == 40
    assert ran == [4]


def test_async_flow_awaited_from_a_coroutine():
    @flow
    async def f(x):
        return await double(x)

    async def main():
        return await f(21)

    assert run(main()) == 42


def test_async_flow_runs_from_every_usual_entry_point():
    @flow
    async def f(x):
        await asyncio.sleep(0)
        return x

    async def as_a_task():
        return await asyncio.create_task(f(1))

    assert asyncio.run(as_a_task()) == 1
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(f(2)) == 2
    finally:
        loop.close()
    assert anyio.run(f, 3) == 3


def test_async_flow_return_state_and_failure():
    @flow
    async def ok():
        return await double(1)

    @flow
    async def broken():
        await asyncio.sleep(0)
        raise KeyError("nope")

    state = run(ok(return_state=True))
    assert isinstance(state, State) and state.is_completed(), state
    assert state.result() == 2
    failed = run(broken(return_state=True))
    assert failed.is_failed(), failed
    assert "KeyError" in failed.message
    with pytest.raises(KeyError):
        run(broken())


def test_async_flow_returning_futures_gives_their_states():
    @flow
    async def f():
        return double.submit(1), triple.map([1, 2])

    single, mapped = run(f())
    assert isinstance(single, State) and single.result() == 2
    assert [s.result() for s in mapped] == [3, 6]


def test_async_flow_retries():
    calls = []

    @flow(retries=1)
    async def flaky():
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) < 2:
            raise ValueError("first")
        return "second"

    assert run(flaky()) == "second"
    assert len(calls) == 2


def test_async_task_called_directly_in_a_sync_flow_returns_a_coroutine_and_runs_nothing():
    ran = []

    @task
    async def note(x):
        ran.append(x)
        return x

    @flow
    def f():
        call = note(1)
        kind = asyncio.iscoroutine(call), inspect.isawaitable(call)
        assert ran == [], "a direct call of an async task in a sync flow runs nothing"
        value = asyncio.run(call)  # awaited, it runs (Prefect 3: the user must run it)
        return kind, value

    assert f() == ((True, True), 1)
    assert ran == [1]


def test_unawaited_async_task_call_in_a_sync_flow_never_runs():
    ran = []

    @task
    async def note():
        ran.append(1)

    @flow
    def f():
        call = note()
        call.close()  # dropped, as Prefect users sometimes do by mistake

    f()
    assert ran == []


def test_inline_await_runs_on_the_flows_own_loop_and_thread():
    @flow
    async def f():
        return (threading.get_ident(), asyncio.get_running_loop()), await where()

    (flow_thread, flow_loop), (task_thread, task_loop) = run(f())
    assert task_thread == flow_thread
    assert task_loop is flow_loop


def test_inline_await_outside_any_flow_runs_on_the_callers_loop():
    async def main():
        return (threading.get_ident(), asyncio.get_running_loop()), await where(), await double(5)

    (me, my_loop), (thread, loop), ten = run(main())
    assert (thread, loop) == (me, my_loop)
    assert ten == 10


def test_inline_await_return_state():
    @task
    async def bad():
        await asyncio.sleep(0)
        raise ValueError("boom")

    @flow
    async def f():
        good = await double(2, return_state=True)
        failed = await bad(return_state=True)
        # (Returned as they are, a tuple of states would decide the flow's own state.)
        return {"good": good, "failed": failed}

    states = run(f())
    good, failed = states["good"], states["failed"]
    assert good.is_completed() and good.result() == 4
    assert failed.is_failed()
    with pytest.raises(ValueError, match="boom"):
        failed.result()


def test_inline_await_raises_the_tasks_exception_into_the_flow():
    @task
    async def bad():
        raise ValueError("boom")

    @flow
    async def f():
        try:
            await bad()
        except ValueError as exc:
            return f"caught {exc}"

    assert run(f()) == "caught boom"


def test_inline_calls_gathered_run_concurrently_on_the_flows_loop():
    # Two inline calls that each wait for the other: they can only both finish if they
    # run at the same time, on one loop.
    @task
    async def meet(mine: asyncio.Event, theirs: asyncio.Event):
        mine.set()
        await asyncio.wait_for(theirs.wait(), 5)
        return "met"

    @flow
    async def f():
        a, b = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(meet(a, b), meet(b, a))

    assert run(f()) == ["met", "met"]


def test_sync_task_called_directly_in_an_async_flow_runs_inline():
    @task
    def who():
        return threading.get_ident()

    @flow
    async def f():
        return threading.get_ident(), who(), triple(2)

    flow_thread, task_thread, six = run(f())
    assert task_thread == flow_thread
    assert six == 6


def test_eager_coroutine_task_inline_and_submitted():
    @flow
    async def f():
        return await inc(1), await inc.submit(2), await inc.map([3, 4])

    assert run(f()) == (2, 3, [4, 5])


# where submitted coroutines run ----------------------------------------------------------


def test_submitted_coroutines_run_on_one_background_loop_per_flow_run():
    @flow
    async def f():
        mine = threading.get_ident(), asyncio.get_running_loop()
        submitted = await asyncio.gather(*[where.submit() for _ in range(4)])
        mapped = await where.map(range(4))
        return mine, submitted + mapped

    (flow_thread, flow_loop), places = run(f())
    threads = {thread for thread, _ in places}
    loops = {id(loop) for _, loop in places}
    assert len(threads) == 1 and len(loops) == 1, places
    thread, loop = places[0]
    assert thread != flow_thread
    assert loop is not flow_loop

    # Another flow run gets its own loop.
    _, again = run(f())
    assert again[0][1] is not loop


def test_submitted_coroutines_of_a_sync_flow_run_on_its_background_loop():
    @flow
    def f():
        futures = [where.submit() for _ in range(3)] + list(where.map(range(3)))
        return threading.get_ident(), [future.result() for future in futures]

    flow_thread, places = f()
    assert len({thread for thread, _ in places}) == 1
    assert len({id(loop) for _, loop in places}) == 1
    assert places[0][0] != flow_thread


def test_blocking_result_of_a_suspending_run_in_an_async_flow_does_not_deadlock(call_with_deadline):
    @task
    async def slow_double(x):
        await asyncio.sleep(0.05)
        return 2 * x

    @flow
    async def f():
        future = slow_double.submit(4)
        # Blocks the flow's loop (allowed, as in Prefect): the run has a loop of its own.
        return future.result(), slow_double.map([1, 2]).result()

    assert call_with_deadline(lambda: asyncio.run(f()), 10) == (8, [2, 4])


def test_nested_submit_from_a_submitted_coroutine():
    @task
    async def outer(x):
        inner = double.submit(x)
        return await inner + 1

    @flow
    async def f():
        return await outer.submit(5)

    assert run(f()) == 11


# awaitable futures -----------------------------------------------------------------------


def test_await_a_future_and_await_submit():
    @flow
    async def f():
        future = double.submit(3)
        first = await future
        again = await future  # awaiting twice gives the same value
        return first, again, await double.submit(4), future.done()

    assert run(f()) == (6, 6, 8, True)


def test_await_the_future_of_a_failed_run_raises_its_exception():
    @task
    async def bad():
        await asyncio.sleep(0)
        raise ValueError("boom")

    @flow
    async def f():
        with pytest.raises(ValueError, match="boom"):
            await bad.submit()
        results = await asyncio.gather(bad.submit(), double.submit(1), return_exceptions=True)
        return [type(r).__name__ if isinstance(r, Exception) else r for r in results]

    assert run(f()) == ["ValueError", 2]


def test_gather_mixes_sync_and_async_futures():
    @flow
    async def f():
        futures = [triple.submit(1), double.submit(1), inc.submit(1), triple.submit(2), double.submit(2)]
        return await asyncio.gather(*futures)

    assert run(f()) == [3, 2, 2, 6, 4]


def test_await_a_maps_future_list_gives_the_results_in_order():
    @flow
    async def f():
        futures = double.map(range(50))
        assert isinstance(futures, PrefectFutureList)
        values = await futures
        return values, await triple.map(range(5)), await inc.map(range(5))

    doubled, tripled, incremented = run(f())
    assert doubled == [2 * i for i in range(50)]
    assert tripled == [0, 3, 6, 9, 12]
    assert incremented == [1, 2, 3, 4, 5]


def test_await_a_map_with_a_failure_raises_it():
    @task
    async def picky(x):
        await asyncio.sleep(0)
        if x == 3:
            raise ValueError("three")
        return x

    @flow
    async def f():
        futures = picky.map(range(5))
        with pytest.raises(ValueError, match="three"):
            await futures
        return [future.state.is_completed() for future in futures]

    assert run(f()) == [True, True, True, False, True]


def test_anyio_task_group_awaiting_submitted_tasks():
    @flow
    async def f(numbers):
        results = []

        async def one(n):
            results.append(await double.submit(n))
            results.append(await triple.submit(n))

        async with anyio.create_task_group() as group:
            for n in numbers:
                group.start_soon(one, n)
        return sorted(results)

    assert run(f([1, 2, 3])) == [2, 3, 4, 6, 6, 9]


def test_futures_work_with_asyncio_wait_for_and_as_completed():
    @flow
    async def f():
        value = await asyncio.wait_for(double.submit(7), 5)
        done = [await next_done for next_done in asyncio.as_completed([double.submit(1), triple.submit(1)])]
        return value, sorted(done)

    assert run(f()) == (14, [2, 3])


def test_awaiting_futures_outside_any_flow():
    async def main():
        return await double.submit(2), await triple.submit(2), await double.map([1, 2])

    assert run(main()) == (4, 6, [2, 4])


def test_awaiting_a_future_in_another_event_loop_thread():
    # The waiter wakes on its own loop, whichever thread runs it.
    @flow
    def f():
        future = double.submit(10)

        def in_a_thread():
            async def wait():
                return await future

            return asyncio.run(wait())

        with_thread = []
        thread = threading.Thread(target=lambda: with_thread.append(in_a_thread()))
        thread.start()
        thread.join(10)
        return with_thread

    assert f() == [20]


# mixing in both directions -------------------------------------------------------------------


def test_async_tasks_submitted_and_mapped_from_a_sync_flow():
    @flow
    def f():
        single = double.submit(1)
        mapped = double.map([1, 2, 3])
        eager = inc.map([1, 2, 3])
        chained = triple.submit(double.submit(5))  # a coroutine run's future as a sync task's input
        return single.result(), mapped.result(), eager.result(), chained.result()

    assert f() == (2, [2, 4, 6], [2, 3, 4], 30)


def test_async_tasks_submitted_and_mapped_outside_any_flow():
    assert double.submit(6).result() == 12
    assert double.map([1, 2]).result() == [2, 4]
    assert inc.submit(1).result() == 2


def test_sync_tasks_submitted_from_an_async_flow_and_awaited():
    @task
    def who(x):
        return x, threading.get_ident()

    @flow
    async def f():
        me = threading.get_ident()
        results = await asyncio.gather(*[who.submit(i) for i in range(3)])
        return me, results

    me, results = run(f())
    assert [x for x, _ in results] == [0, 1, 2]
    assert all(thread != me for _, thread in results), "submitted sync runs execute on the pool"


def test_futures_pass_between_sync_and_async_tasks():
    @flow
    async def f():
        a = triple.submit(1)  # sync
        b = double.submit(a)  # async, waits on a sync future
        c = triple.submit(b)  # sync, waits on an async future
        d = await double(c)  # inline, its argument a future
        return d, await double.submit(2, wait_for=[c])

    assert run(f()) == (36, 4)


def test_wait_for_on_an_async_flow_call():
    @flow
    async def f(x):
        return x

    async def main():
        upstream = double.submit(1)
        return await f(3, wait_for=[upstream]), upstream.done()

    assert run(main()) == (3, True)


def test_sequential_runner_with_async_tasks():
    from ferroflow.task_runners import SequentialTaskRunner

    @flow(task_runner=SequentialTaskRunner())
    async def f():
        return await asyncio.gather(double.submit(1), triple.submit(1)), await double.map([1, 2])

    assert run(f()) == ([2, 3], [2, 4])


# subflows --------------------------------------------------------------------------------------


@flow
async def child(x):
    await asyncio.sleep(0)
    return 10 * x


def test_async_subflow_awaited():
    @flow
    async def parent():
        return await child(1) + 1

    assert run(parent()) == 11


def test_async_subflows_gathered_run_concurrently(capfd):
    # Each child waits until the other has started: only concurrent children finish.
    @flow
    async def meeting(mine: asyncio.Event, theirs: asyncio.Event):
        mine.set()
        await asyncio.wait_for(theirs.wait(), 5)
        return "met"

    @flow
    async def parent():
        a, b = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(meeting(a, b), meeting(b, a))

    assert run(parent()) == ["met", "met"]
    err = capfd.readouterr().err
    assert err.count("Beginning subflow run") == 2, err


def test_sync_subflow_in_an_async_flow_runs():
    @flow
    def sync_child(x):
        return triple.submit(x).result() + 1

    @flow
    async def parent():
        return sync_child(2)

    assert run(parent()) == 7


def test_async_subflow_called_from_a_sync_flow_returns_a_coroutine():
    @flow
    def parent():
        call = child(4)
        assert asyncio.iscoroutine(call)
        return asyncio.run(call)  # as in Prefect 3

    assert parent() == 40


def test_async_subflow_return_state():
    @flow
    async def broken_child():
        raise RuntimeError("child failed")

    @flow
    async def parent():
        state = await broken_child(return_state=True)
        return state.is_failed(), await child(2, return_state=True)

    failed, completed = run(parent())
    assert failed is True
    assert completed.result() == 20


def test_async_subflow_submits_to_its_own_loop():
    @flow
    async def inner():
        return await where.submit()

    @flow
    async def outer():
        mine = await where.submit()
        theirs = await inner()
        return mine, theirs

    mine, theirs = run(outer())
    assert mine[1] is not theirs[1]


# retries ---------------------------------------------------------------------------------------


def test_async_task_retries_with_log_lines(capfd):
    calls = []

    @task(retries=2)
    async def flaky():
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) < 3:
            raise ValueError("boom")
        return "ok"

    @flow
    async def f():
        return await flaky.submit()

    assert run(f()) == "ok"
    err = capfd.readouterr().err
    for n in (1, 2):
        msg = f"Task run failed with exception: ValueError('boom') - Retry {n}/2 will start immediately"
        assert task_line("INFO", "flaky-0", msg).search(err), err
    assert task_line("INFO", "flaky-0", "Finished in state Completed()").search(err), err


def test_async_task_is_awaiting_retry_between_attempts():
    failed_once = threading.Event()
    calls = []

    @task(retries=1, retry_delay_seconds=0.3)
    async def flaky():
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) == 1:
            failed_once.set()
            raise ValueError("boom")
        return "ok"

    @flow
    async def f():
        future = flaky.submit()
        await asyncio.to_thread(failed_once.wait, 5)
        seen = set()
        deadline = time.monotonic() + 5
        while not future.done() and time.monotonic() < deadline:
            seen.add(future.state.name)
            await asyncio.sleep(0.005)
        return seen, await future

    seen, value = run(f())
    assert value == "ok"
    assert "AwaitingRetry" in seen, seen


def test_async_retries_exhausted_and_inline_retries(capfd):
    @task(retries=1)
    async def always():
        await asyncio.sleep(0)
        raise ValueError("boom")

    @task(retries=1)
    async def always_eager():
        raise ValueError("eager")

    @flow
    async def f():
        submitted, eager = always.submit(), always_eager.submit()
        await asyncio.gather(submitted, eager, return_exceptions=True)
        inline = await always(return_state=True)
        return {"states": (submitted.state, inline, eager.state)}

    submitted, inline, eager = run(f())["states"]
    assert submitted.is_failed() and inline.is_failed() and eager.is_failed()
    err = capfd.readouterr().err
    exhausted = "Task run failed with exception: ValueError('boom') - Retries are exhausted"
    assert task_line("ERROR", "always-0", exhausted).search(err), err
    assert task_line("ERROR", "always-1", exhausted).search(err), err
    assert task_line(
        "INFO", "always-1", "Task run failed with exception: ValueError('boom') - Retry 1/1 will start immediately"
    ).search(err), err
    eager_exhausted = "Task run failed with exception: ValueError('eager') - Retries are exhausted"
    assert task_line("ERROR", "always_eager-0", eager_exhausted).search(err), err


def test_async_task_retries_in_a_sync_flow():
    calls = []

    @task(retries=3)
    async def flaky(x):
        calls.append(x)
        await asyncio.sleep(0)
        if calls.count(x) < 2:
            raise ValueError("boom")
        return x

    @flow
    def f():
        return flaky.map([1, 2]).result()

    assert f() == [1, 2]
    assert sorted(calls) == [1, 1, 2, 2]


# run loggers and context ------------------------------------------------------------------------


def test_get_run_logger_in_async_tasks(capfd):
    @task
    async def talker(tag):
        await asyncio.sleep(0)
        get_run_logger().info(f"from {tag}")

    @task
    async def eager_talker():
        get_run_logger().warning("eager says hi")

    @flow
    async def f():
        get_run_logger().info("from flow")
        await talker("inline")
        await talker.submit("submitted")
        await talker.map(["mapped"])
        await eager_talker.submit()

    run(f())
    err = capfd.readouterr().err
    assert task_line("INFO", "talker-0", "from inline").search(err), err
    assert task_line("INFO", "talker-1", "from submitted").search(err), err
    assert task_line("INFO", "talker-2", "from mapped").search(err), err
    assert task_line("WARNING", "eager_talker-0", "eager says hi").search(err), err
    assert re.search(rf"^{TS} \| INFO    \| Flow run '[a-z]+-[a-z]+' - from flow$", err, re.MULTILINE), err


def test_get_run_logger_in_an_async_task_outside_a_flow(capfd):
    @task
    async def talker():
        await asyncio.sleep(0)
        get_run_logger().info("alone")

    run(talker())
    talker.submit().result()
    err = capfd.readouterr().err
    assert task_line("INFO", "talker", "alone").search(err), err


def test_run_context_inside_a_submitted_coroutine():
    from ferroflow.context import FlowRunContext, TaskRunContext

    @task
    async def ask():
        await asyncio.sleep(0)
        return TaskRunContext.get().task_run.name, FlowRunContext.get().flow_run.name

    @flow
    async def f():
        return FlowRunContext.get().flow_run.name, await ask.submit(), await ask()

    flow_name, (submitted_task, submitted_flow), (inline_task, inline_flow) = run(f())
    assert submitted_task == "ask-0" and inline_task == "ask-1"
    assert submitted_flow == inline_flow == flow_name


def test_log_prints_in_async_tasks(capfd):
    @task(log_prints=True)
    async def shout():
        await asyncio.sleep(0)
        print("printed in a coroutine")

    @flow
    async def f():
        await shout.submit()

    run(f())
    err = capfd.readouterr().err
    assert task_line("INFO", "shout-0", "printed in a coroutine").search(err), err


# states of coroutine runs -------------------------------------------------------------------------


def test_states_of_a_suspended_run_are_running_then_completed():
    release = threading.Event()
    started = threading.Event()

    @task
    async def held():
        started.set()
        await asyncio.to_thread(release.wait, 5)
        return "done"

    @flow
    async def f():
        future = held.submit()
        await asyncio.to_thread(started.wait, 5)
        running = future.state.name, future.done()
        release.set()
        return running, await future, future.state.name

    assert run(f()) == (("Running", False), "done", "Completed")


def test_returned_state_from_an_async_task_decides_its_state():
    from ferroflow.states import Failed

    @task
    async def says_failed():
        await asyncio.sleep(0)
        return Failed(message="told so")

    @flow
    async def f():
        future = says_failed.submit()
        await asyncio.gather(future, return_exceptions=True)
        return {"state": future.state}

    state = run(f())["state"]
    # As for a sync task that returns a failed State.
    assert state.is_failed() and "told so" in state.message, state


def test_cancelled_run_result_raises_cancelled_run():
    gate = threading.Event()

    @task
    def blocker():
        gate.wait(5)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    async def f():
        up = blocker.submit()
        waiting = double.submit(1, wait_for=[up])
        awaiting_started = asyncio.Event()

        async def awaiter():
            awaiting_started.set()
            return await waiting

        awaiting = asyncio.ensure_future(awaiter())
        await awaiting_started.wait()  # the awaiter is now suspended in `await waiting`
        awaiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await awaiting  # the cancellation has reached the awaiter
        gate.set()
        return {"state": await asyncio.to_thread(lambda: waiting.wait() or waiting.state)}

    state = run(f())["state"]
    assert state.is_cancelled(), state
    with pytest.raises(CancelledRun):
        state.result()
