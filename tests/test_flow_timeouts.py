"""Flow `timeout_seconds` (issue 8, item 2, the flow's part), as a user sees it: an
attempt over the limit ends `TimedOut` with Prefect's message and raises
`ferroflow.flow_engine.FlowRunTimeoutError` (a TimeoutError); it is retried while
retries remain; a sync flow blocked in `time.sleep` in the main thread is interrupted
(SIGALRM), an async flow at its next `await`, a subflow on a worker thread on time. The
limit covers the wait for the flow's task runs: at the limit the ones not started end
Cancelled and the ones executing are not waited for, so the flow returns at its limit.

Timing: the machine is shared and noisy, so each bound is the limit plus a generous
margin, far below the time the blocked code would take.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.flow_engine import FlowRunTimeoutError
from ferroflow.task_runners import ThreadPoolTaskRunner

# pytest-timeout's default method arms SIGALRM's timer for the whole test, and a limit
# never takes over a timer someone else armed: a flow in the main thread would then run
# on a helper thread. Its thread method leaves SIGALRM to the code under test.
pytestmark = pytest.mark.timeout(120, method="thread")

LIMIT = 0.5
#: What a timed-out call may take beyond its limit on a busy machine.
MARGIN = 1.5
MESSAGE = "Flow run exceeded timeout of 0.5 second(s)"


@pytest.fixture
def flow_lines(ferroflow_records):
    """(level, message) of the flow-run log records so far."""
    return lambda: [(r.levelname, r.getMessage()) for r in ferroflow_records("ferroflow.flow_runs")]


def timed(call):
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


# -- a sync flow in the main thread ------------------------------------------------------------


def test_a_sync_flow_blocked_in_sleep_is_stopped_at_its_limit(flow_lines):
    @flow(timeout_seconds=LIMIT)
    def sleepy():
        time.sleep(30)

    assert threading.current_thread() is threading.main_thread()  # the SIGALRM case
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    state, elapsed = timed(lambda: sleepy(return_state=True))
    assert elapsed < LIMIT + MARGIN
    assert state.is_failed() and state.name == "TimedOut" and state.message == MESSAGE
    assert str(state) == f"TimedOut({MESSAGE!r}, type=FAILED)"
    error = state.result(raise_on_failure=False)
    assert isinstance(error, FlowRunTimeoutError) and isinstance(error, TimeoutError)
    assert str(error) == "Scope timed out after 0.5 second(s)."
    assert flow_lines()[-2:] == [("ERROR", MESSAGE), ("INFO", f"Finished in state TimedOut({MESSAGE!r}, type=FAILED)")]


def test_a_direct_call_raises_flow_run_timeout_error():
    @flow(timeout_seconds=LIMIT)
    def sleepy():
        time.sleep(30)

    with pytest.raises(FlowRunTimeoutError, match=r"Scope timed out after 0\.5 second\(s\)\."):
        sleepy()


def test_a_flow_within_its_limit_completes_as_usual():
    @flow(timeout_seconds=5)
    def quick(x):
        return x * 2

    assert quick(21) == 42
    assert quick.timeout_seconds == 5.0


def test_a_timed_out_attempt_is_retried_and_its_running_hooks_fire_again(flow_lines):
    attempts: list[int] = []

    @flow(timeout_seconds=LIMIT, retries=2, on_running=[lambda f, r, s: attempts.append(r.run_count)])
    def slow_then_fast():
        if len(attempts) == 1:
            time.sleep(30)
        return "second attempt"

    value, elapsed = timed(slow_then_fast)
    assert value == "second attempt"
    assert attempts == [1, 2]
    assert elapsed < LIMIT + MARGIN
    lines = [message for _, message in flow_lines()]
    assert MESSAGE in lines
    retrying = "Received non-final state 'AwaitingRetry' when proposing final state 'TimedOut'"
    assert f"{retrying} and will attempt to run again..." in lines
    assert lines[-1] == "Finished in state Completed()"


def test_failure_hooks_see_the_timed_out_state_once_retries_are_exhausted():
    seen: list[tuple[str, str]] = []

    @flow(timeout_seconds=LIMIT, retries=1, on_failure=[lambda f, r, s: seen.append((s.name, s.message))])
    def sleepy():
        time.sleep(30)

    _, elapsed = timed(lambda: sleepy(return_state=True))
    assert elapsed < 2 * LIMIT + MARGIN
    assert seen == [("TimedOut", MESSAGE)]


def test_hooks_are_not_under_the_limit():
    @flow(timeout_seconds=LIMIT, on_completion=[lambda f, r, s: time.sleep(2 * LIMIT)])
    def quick():
        return "done"

    assert quick() == "done"


def test_timeout_seconds_is_checked_when_decorated_and_kept_as_prefect_keeps_it():
    def job():
        pass

    assert flow(timeout_seconds=0)(job).timeout_seconds is None  # 0: no limit, as in Prefect
    assert flow(timeout_seconds=2)(job).timeout_seconds == 2.0
    with pytest.raises(ValueError, match="Flow 'job': timeout_seconds must be a finite number > 0"):
        flow(timeout_seconds=-1)(job)
    with pytest.raises(TypeError, match="Flow 'job': timeout_seconds must be a number of seconds"):
        flow(timeout_seconds="5")(job)
    limited = flow(timeout_seconds=3)(job)
    assert limited.with_options(name="copy").timeout_seconds == 3.0
    assert limited.with_options(timeout_seconds=1).timeout_seconds == 1.0
    assert limited.with_options(timeout_seconds=None).timeout_seconds == 3.0  # None keeps, as in Prefect


def test_a_timeout_error_raised_by_the_flow_itself_is_timed_out_as_in_prefect():
    @flow
    def calls_a_service():
        raise TimeoutError("the service did not answer")

    state = calls_a_service(return_state=True)
    assert state.name == "TimedOut" and state.is_failed()
    assert state.message == "Flow run failed due to timeout: TimeoutError('the service did not answer')"
    with pytest.raises(TimeoutError, match="the service did not answer"):
        calls_a_service()


# -- the flow's task runs --------------------------------------------------------------------------


def test_the_limit_covers_the_runs_the_flow_started_and_the_flow_does_not_wait_for_them(gate):
    started = threading.Event()
    futures: list[object] = []

    @task
    def blocker():
        started.set()
        gate.wait(30)
        return "blocker done"

    @task
    def queued(i):
        return i

    @flow(timeout_seconds=LIMIT, task_runner=ThreadPoolTaskRunner(max_workers=4))
    def job():
        first = blocker.submit()
        started.wait(10)
        futures.append(first)
        futures.extend(queued.submit(i, wait_for=[first]) for i in range(3))  # they wait for it
        # The function returns at once; the runs it started are what take too long.

    state, elapsed = timed(lambda: job(return_state=True))
    assert elapsed < LIMIT + MARGIN
    assert state.name == "TimedOut" and state.message == MESSAGE
    running, *not_started = futures
    for future in not_started:
        future.wait(10)  # a free worker ends each one (it never executes)
    assert [f.state.name for f in not_started] == ["Cancelled"] * 3
    assert not running.state.is_final()  # still executing: the flow did not wait for it
    gate.set()
    assert running.result(timeout=10) == "blocker done"


def test_a_retry_s_limit_covers_its_own_runs_not_those_a_timed_out_attempt_left(gate):
    futures: list[object] = []

    @task
    def blocker():
        gate.wait(30)
        return "finished"

    @task
    def quick(x):
        return x

    @flow(timeout_seconds=LIMIT, retries=1)
    def job():
        if not futures:
            futures.append(blocker.submit())  # still executing when the attempt times out
            time.sleep(30)
        return quick.submit("retried").result()

    value, elapsed = timed(job)
    assert value == "retried"
    assert elapsed < 2 * LIMIT + MARGIN
    assert not futures[0].state.is_final()  # left behind, not waited for
    gate.set()
    assert futures[0].result(timeout=10) == "finished"


def test_a_flow_waiting_on_a_future_is_stopped_at_its_limit(gate):
    @task
    def blocker():
        gate.wait(30)

    @flow(timeout_seconds=LIMIT)
    def job():
        blocker.submit().result()

    state, elapsed = timed(lambda: job(return_state=True))
    assert elapsed < LIMIT + MARGIN
    assert state.name == "TimedOut"


# -- async flows -----------------------------------------------------------------------------------


def test_an_async_flow_is_cancelled_at_its_next_await(flow_lines):
    @flow(timeout_seconds=LIMIT)
    async def sleepy():
        await asyncio.sleep(30)

    state, elapsed = timed(lambda: asyncio.run(sleepy(return_state=True)))
    assert elapsed < LIMIT + MARGIN
    assert state.name == "TimedOut" and state.message == MESSAGE
    assert isinstance(state.result(raise_on_failure=False), FlowRunTimeoutError)
    assert flow_lines()[-2] == ("ERROR", MESSAGE)


def test_an_async_flow_is_retried_after_a_timeout_and_awaits_its_async_hooks():
    seen: list[str] = []

    async def on_failure(flow_, flow_run, state):
        await asyncio.sleep(0)
        seen.append(f"{state.name} after {flow_run.run_count}")

    @flow(timeout_seconds=LIMIT, retries=1, on_failure=[on_failure])
    async def sleepy():
        await asyncio.sleep(30)

    with pytest.raises(FlowRunTimeoutError):
        asyncio.run(sleepy())
    assert seen == ["TimedOut after 2"]


def test_an_async_flow_waiting_for_its_task_runs_is_stopped_at_its_limit(gate):
    @task
    def blocker():
        gate.wait(30)

    @flow(timeout_seconds=LIMIT)
    async def job():
        blocker.submit()

    state, elapsed = timed(lambda: asyncio.run(job(return_state=True)))
    assert elapsed < LIMIT + MARGIN
    assert state.name == "TimedOut"


# -- subflows ----------------------------------------------------------------------------------------


def test_a_timed_out_subflow_fails_the_parent_only_if_the_parent_lets_it():
    @flow(timeout_seconds=LIMIT)
    def child():
        time.sleep(30)

    @flow
    def parent():
        state = child(return_state=True)
        return state.name

    value, elapsed = timed(parent)
    assert value == "TimedOut"
    assert elapsed < LIMIT + MARGIN


def test_a_subflow_on_a_worker_thread_is_stopped_at_its_limit():
    @flow(timeout_seconds=LIMIT)
    def child():
        time.sleep(30)

    @task
    def runs_child():
        return child(return_state=True).name

    @flow
    def parent():
        return runs_child.submit().result()

    value, elapsed = timed(parent)
    assert value == "TimedOut"
    assert elapsed < LIMIT + MARGIN


def test_the_parent_s_limit_stops_a_subflow_without_one_which_crashes():
    crashed: list[str] = []

    @flow(on_crashed=[lambda f, r, s: crashed.append(s.name)])
    def child():
        time.sleep(30)

    @flow(timeout_seconds=LIMIT)
    def parent():
        child()

    state, elapsed = timed(lambda: parent(return_state=True))
    assert elapsed < LIMIT + MARGIN
    assert state.name == "TimedOut" and state.message == MESSAGE
    assert crashed == ["Crashed"]  # stopped from outside, as by an interrupt


def test_an_async_subflow_with_a_limit_inside_an_async_parent():
    @flow(timeout_seconds=LIMIT)
    async def child(seconds):
        await asyncio.sleep(seconds)
        return seconds

    @flow
    async def parent():
        states = await asyncio.gather(child(30, return_state=True), child(0, return_state=True))
        return [state.name for state in states]

    value, elapsed = timed(lambda: asyncio.run(parent()))
    assert value == ["TimedOut", "Completed"]
    assert elapsed < LIMIT + MARGIN
