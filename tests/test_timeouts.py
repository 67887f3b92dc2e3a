"""Task `timeout_seconds` (issue 8, item 2), as a user sees it: an attempt over the limit
fails `TimedOut` with Prefect's message and error (`ferroflow.task_engine.
TaskRunTimeoutError`, a TimeoutError) and is retried while retries remain.

Better than Prefect, whose worker threads cannot be interrupted in blocking code (its
issues 15760 and 18542): a submitted run blocked in `time.sleep`, a C call or a busy loop
fails at its limit, its dependents go on, the flow does not wait for the stuck code, and
that code is told to stop at its next bytecode, on a thread that is then replaced. A
direct call in the main thread is interrupted where it is (SIGALRM), as in Prefect; an
async task at its next `await`.

Timing: the machine is shared and noisy. Only the precision test holds the limit to
±0.1 s, as issue 8 asks; elsewhere a bound is the limit plus a generous margin, far below
the time the blocked code would take.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import re
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from ferroflow import allow_failure, flow, get_run_logger, task
from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.flow_engine import FlowRunTimeoutError
from ferroflow.states import StateType
from ferroflow.task_engine import TaskRunTimeoutError
from ferroflow.task_runners import ThreadPoolTaskRunner

LIMIT = 0.5
#: What a timed-out attempt may take beyond its limit here (not the precision asked for).
MARGIN = 1.5
MESSAGE = "Task run exceeded timeout of 0.5 second(s)"
ERROR = "Scope timed out after 0.5 second(s)."


@pytest.fixture
def task_lines(ferroflow_records):
    """(level, run name, message) of the task-run log records so far."""
    return lambda: [
        (r.levelname, getattr(r, "task_run_name", None), r.getMessage())
        for r in ferroflow_records("ferroflow.task_runs")
    ]


@pytest.fixture
def pipe() -> Iterator[int]:
    """The read end of a pipe nobody writes to until teardown: a C-level `select` on it
    blocks until then."""
    read, write = os.pipe()
    yield read
    os.write(write, b"x")
    os.close(write)
    time.sleep(0.05)  # the blocked select returns before its descriptor goes
    os.close(read)


def timed(call: Callable[[], object]) -> tuple[object, float]:
    start = time.monotonic()
    value = call()
    return value, time.monotonic() - start


def test_the_errors_are_timeout_errors_at_prefects_paths():
    assert issubclass(TaskRunTimeoutError, TimeoutError)
    assert issubclass(FlowRunTimeoutError, TimeoutError)
    assert TaskRunTimeoutError.__module__ == "ferroflow.task_engine"
    assert FlowRunTimeoutError.__module__ == "ferroflow.flow_engine"


# -- a submitted run on a worker thread -------------------------------------------------------


def blockers(gate: threading.Event, pipe: int) -> dict[str, Callable[[], object]]:
    """Ways for a task to block far past its limit, in C or in Python."""

    def busy_loop() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pass

    return {
        "time.sleep": lambda: time.sleep(30),
        "a C-level lock wait": lambda: gate.wait(30),
        "select on a silent pipe": lambda: select.select([pipe], [], [], 30),
        "a busy loop": busy_loop,
    }


@pytest.mark.parametrize("blocker", ["time.sleep", "a C-level lock wait", "select on a silent pipe", "a busy loop"])
def test_a_submitted_run_blocked_on_a_worker_times_out_at_its_limit(blocker, gate, pipe):
    block = blockers(gate, pipe)[blocker]

    @task(timeout_seconds=LIMIT)
    def stuck():
        block()
        return "too late"

    @flow
    def f():
        future = stuck.submit()
        _, elapsed = timed(future.wait)
        with pytest.raises(TaskRunTimeoutError, match=f"^{re.escape(ERROR)}$"):
            future.result()
        return future.state, elapsed

    state, elapsed = f()
    assert elapsed < LIMIT + MARGIN, f"{blocker}: {elapsed:.2f} s"
    assert state.type == StateType.FAILED and state.name == "TimedOut"
    assert state.message == MESSAGE
    assert str(state) == f"TimedOut({MESSAGE!r}, type=FAILED)"
    with pytest.raises(TaskRunTimeoutError, match=f"^{re.escape(ERROR)}$"):
        state.result()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, TaskRunTimeoutError) and str(error) == ERROR


def test_the_timeout_is_logged_as_prefect_logs_it(task_lines):
    @task(timeout_seconds=LIMIT)
    def slow():
        time.sleep(30)

    @flow
    def f():
        slow.submit().wait()

    f()
    assert task_lines()[-3:] == [
        ("ERROR", "slow-0", f"Task run failed with exception: TaskRunTimeoutError({ERROR!r})"),
        ("ERROR", "slow-0", MESSAGE),
        ("ERROR", "slow-0", f"Finished in state TimedOut({MESSAGE!r}, type=FAILED)"),
    ]


def test_the_precision_of_the_limit_is_a_tenth_of_a_second(gate):
    # 20 runs blocked at once, each on a worker thread; each is measured from its own
    # start to the end its state records.
    @task(timeout_seconds=LIMIT)
    def stuck(i):
        started[i] = time.time()
        gate.wait(30)

    started: dict[int, float] = {}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=20))
    def f():
        return stuck.map(range(20), return_state=True)

    states = f()
    overruns = [state.timestamp.timestamp() - started[i] - LIMIT for i, state in enumerate(states)]
    assert all(state.name == "TimedOut" for state in states)
    assert max(abs(overrun) for overrun in overruns) <= 0.1, overruns


def test_dependents_go_on_and_the_flow_does_not_wait_for_the_stuck_code():
    @task(timeout_seconds=LIMIT)
    def stuck():
        time.sleep(30)

    @task
    def after(upstream):
        return f"after {type(upstream).__name__}"

    @task
    def double(x):
        return 2 * x

    @flow
    def f():
        blocked = stuck.submit()
        downstream = after.submit(allow_failure(blocked))
        not_ready = after.submit(blocked)
        others = double.map(range(5))
        not_ready.wait()
        return downstream.result(), not_ready.state.name, others.result()

    value, elapsed = timed(f)
    assert value == ("after TaskRunTimeoutError", "NotReady", [0, 2, 4, 6, 8])
    assert elapsed < LIMIT + MARGIN


# CPython 3.13 loses the stop `PyThreadState_SetAsyncExc` schedules for a thread busy in a
# loop that calls C functions (python/cpython#139622); docs/timeouts.md says so.
CPYTHON_313_LOSES_THE_STOP = pytest.mark.skipif(
    sys.version_info[:2] == (3, 13), reason="CPython 3.13 loses asynchronous exceptions (cpython#139622)"
)


@CPYTHON_313_LOSES_THE_STOP
def test_the_stuck_code_is_told_to_stop_at_its_next_bytecode():
    stopped = threading.Event()
    seen: list[BaseException] = []

    @task(timeout_seconds=LIMIT)
    def spinning():
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                pass
        except BaseException as exc:
            seen.append(exc)
            raise
        finally:
            stopped.set()

    @flow
    def f():
        return [spinning.submit(return_state=True)]

    [state] = f()
    assert state.name == "TimedOut"
    assert stopped.wait(5), "the busy loop was not stopped"
    # A BaseException, so that the task's own `except Exception` cannot swallow it.
    assert len(seen) == 1 and not isinstance(seen[0], Exception)


def test_code_blocked_in_a_c_call_meets_the_stop_when_the_call_returns():
    ran_on = threading.Event()

    @task(timeout_seconds=0.2)
    def sleeper():
        time.sleep(0.6)
        ran_on.set()  # never reached: the stop comes first

    @flow
    def f():
        return [sleeper.submit(return_state=True)]

    [state] = f()
    assert state.name == "TimedOut"
    time.sleep(1)
    assert not ran_on.is_set()


def test_a_thread_stuck_past_its_limit_is_replaced(gate):
    threads: list[threading.Thread] = []

    @task(timeout_seconds=LIMIT)
    def record(block):
        threads.append(threading.current_thread())
        if block:
            gate.wait(30)
        return len(threads)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        first = record.submit(True, return_state=True)
        second = record.submit(False, return_state=True)
        return first, second

    first, second = f()
    assert first.name == "TimedOut"
    assert second.result() == 2
    stuck, fresh = threads
    assert stuck is not fresh
    assert stuck.is_alive()  # still blocked: it was replaced, not waited for


def test_threads_a_timed_task_starts_are_ordinary_and_idle_helpers_end():
    @task(timeout_seconds=5)
    def start_a_thread():
        child = threading.Thread(target=lambda: None)
        return threading.current_thread(), child.daemon

    @flow
    def f():
        return start_a_thread.submit().result()

    helper, child_is_daemon = f()
    assert child_is_daemon is False  # as from an engine worker: joined at exit, not killed
    assert helper is not threading.main_thread()
    helper.join(10)  # an idle helper thread ends by itself (after 2 s)
    assert not helper.is_alive()


def test_code_that_swallows_the_stop_goes_on_but_its_run_has_timed_out():
    carried_on = threading.Event()

    @task(timeout_seconds=0.3)
    def stubborn():
        try:
            time.sleep(1)
        except BaseException:
            pass
        carried_on.set()
        return "late"

    @flow
    def f():
        return [stubborn.submit(return_state=True)]

    [state] = f()  # on a worker thread
    assert state.name == "TimedOut"
    assert carried_on.wait(5)
    assert stubborn(return_state=True).name == "TimedOut"  # in the main thread, when it returns


def test_quick_timed_runs_reuse_their_threads(os_thread_count):
    @task(timeout_seconds=5)
    def quick(x):
        return x + 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def f():
        return quick.map(range(300)).result()

    before = os_thread_count()
    assert f() == list(range(1, 301))
    assert os_thread_count() - before <= 12  # the pool's workers and one helper each at most


# -- retries -----------------------------------------------------------------------------------


def test_a_timed_out_attempt_is_retried_while_retries_remain(task_lines):
    attempts: list[int] = []

    @task(timeout_seconds=LIMIT, retries=2)
    def slow():
        attempts.append(1)
        time.sleep(30)

    @flow
    def f():
        return [slow.submit(return_state=True)]

    [state], elapsed = timed(f)
    assert state.name == "TimedOut" and state.message == MESSAGE
    assert len(attempts) == 3
    assert elapsed < 3 * LIMIT + MARGIN
    failed = f"Task run failed with exception: TaskRunTimeoutError({ERROR!r})"
    assert [line for line in task_lines() if line[1] == "slow-0"] == [
        ("INFO", "slow-0", f"{failed} - Retry 1/2 will start immediately"),
        ("INFO", "slow-0", f"{failed} - Retry 2/2 will start immediately"),
        ("ERROR", "slow-0", f"{failed} - Retries are exhausted"),
        ("ERROR", "slow-0", MESSAGE),
        ("ERROR", "slow-0", f"Finished in state TimedOut({MESSAGE!r}, type=FAILED)"),
    ]


def test_a_retry_after_a_timeout_can_complete():
    attempts: list[int] = []

    @task(timeout_seconds=LIMIT, retries=1)
    def flaky():
        attempts.append(TaskRunContext.get().task_run.run_count)
        if len(attempts) == 1:
            time.sleep(30)
        return "second time"

    @flow
    def f():
        return flaky.submit().result()

    assert f() == "second time"
    assert attempts == [1, 2]  # the run's context follows each attempt onto its thread


def test_the_limit_is_per_attempt():
    # Three attempts of 0.3 s each: 0.9 s in all, each within the limit of 0.5 s.
    attempts: list[int] = []

    @task(timeout_seconds=LIMIT, retries=2)
    def slowish():
        attempts.append(1)
        time.sleep(0.3)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return len(attempts)

    @flow
    def f():
        return slowish.submit().result()

    assert f() == 3


# -- what passes through unchanged ---------------------------------------------------------


def test_a_run_that_ends_in_time_gives_its_value_or_its_own_error():
    @task(timeout_seconds=5)
    def add(x, y=1):
        return x + y

    @task(timeout_seconds=5)
    def boom():
        raise ValueError("boom")

    @flow
    def f():
        return add.submit(1, y=2).result(), add(3), boom.submit(return_state=True), boom(return_state=True)

    three, four, submitted, direct = f()
    assert (three, four) == (3, 4)
    for state in (submitted, direct):
        assert state.name == "Failed"
        assert state.message == "Task run encountered an exception ValueError: boom"
    with pytest.raises(ValueError, match="boom"):
        submitted.result()


def test_a_limit_of_years_is_a_limit_like_any_other():
    # Beyond what a lock wait or setitimer take at once: re-armed as it comes nearer.
    @task(timeout_seconds=1e12)
    def add(x):
        return x + 1

    @task(timeout_seconds=1e12)
    async def add_async(x):
        return x + 1

    @flow
    def f():
        return add(1), add.submit(2).result(), add_async.submit(3).result()

    assert f() == (2, 3, 4)


def test_a_timeout_error_the_task_raises_itself_is_timed_out_as_in_prefect():
    @task
    def query():
        raise TimeoutError("the database did not answer")

    @flow
    def f():
        return [query.submit(return_state=True)]

    [state] = f()
    assert state.name == "TimedOut"
    assert state.message == "Task run failed due to timeout: TimeoutError('the database did not answer')"


# -- where the run's code finds its run --------------------------------------------------------


def test_the_run_context_follows_the_code_onto_its_thread(task_lines, capsys):
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable", default="unset")

    @task
    def inner(x):
        return x * 10

    @task(timeout_seconds=5, log_prints=True)
    def outer(x):
        get_run_logger().info("logged")
        print("printed")
        task_run = TaskRunContext.get().task_run
        flow_run = FlowRunContext.get().flow_run
        return task_run.name, flow_run.id, variable.get(), inner.submit(x).result()

    @flow
    def f():
        variable.set("from the flow")
        return outer.submit(4).result(), FlowRunContext.get().flow_run.id

    (name, flow_run_id, value, nested), expected_flow_run_id = f()
    assert name == "outer-0"
    assert flow_run_id == expected_flow_run_id
    assert value == "from the flow"
    assert nested == 40
    assert ("INFO", "outer-0", "logged") in task_lines()
    assert ("INFO", "outer-0", "printed") in task_lines()
    assert "printed" not in capsys.readouterr().out


# -- a direct call in the main thread: SIGALRM ------------------------------------------------


@pytest.fixture
def alarm():
    """SIGALRM as it was (pytest-timeout may be using it), put back after the test."""
    handler = signal.getsignal(signal.SIGALRM)
    remaining, interval = signal.getitimer(signal.ITIMER_REAL)
    started = time.monotonic()
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)
    if remaining:
        signal.setitimer(signal.ITIMER_REAL, max(remaining - (time.monotonic() - started), 0.001), interval)


def test_a_direct_call_in_the_main_thread_is_interrupted_where_it_is():
    assert threading.current_thread() is threading.main_thread()
    threads: list[threading.Thread] = []

    @task(timeout_seconds=LIMIT)
    def nap():
        threads.append(threading.current_thread())
        time.sleep(30)

    @flow
    def f():
        with pytest.raises(TaskRunTimeoutError, match=f"^{re.escape(ERROR)}$"):
            nap()
        return [nap(return_state=True)]

    [state], elapsed = timed(f)
    assert elapsed < 2 * LIMIT + MARGIN
    assert state.name == "TimedOut" and state.message == MESSAGE
    assert threads == [threading.main_thread()] * 2  # interrupted in place, not moved


def test_the_alarm_handler_and_timer_in_place_before_are_put_back(alarm):
    calls: list[int] = []

    def own_handler(signum, frame):
        calls.append(signum)

    @task(timeout_seconds=LIMIT)
    def nap():
        time.sleep(30)

    signal.signal(signal.SIGALRM, own_handler)
    signal.setitimer(signal.ITIMER_REAL, 20)
    state, elapsed = timed(lambda: nap(return_state=True))
    assert state.name == "TimedOut"
    assert signal.getsignal(signal.SIGALRM) is own_handler
    remaining = signal.getitimer(signal.ITIMER_REAL)[0]
    # The timer went on counting during the call (10 ms for the timer's rounding when re-armed).
    assert 20 - elapsed - 0.5 < remaining <= 20 - elapsed + 0.01
    assert calls == []


def test_a_timer_armed_before_still_rings_on_time_during_a_timed_call(alarm):
    rang: list[float] = []
    start = time.monotonic()
    signal.signal(signal.SIGALRM, lambda signum, frame: rang.append(time.monotonic() - start))
    signal.setitimer(signal.ITIMER_REAL, 0.2)

    @task(timeout_seconds=LIMIT)
    def nap():
        time.sleep(30)

    state = nap(return_state=True)
    assert state.name == "TimedOut"
    assert len(rang) == 1 and 0.2 <= rang[0] < LIMIT, rang
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # it rang: nothing to put back


def test_a_handler_in_place_before_may_still_raise_into_the_call(alarm):
    # A watchdog of the user's own (pytest-timeout is one) keeps its effect.
    def watchdog(signum, frame):
        raise RuntimeError("watchdog")

    signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 0.2)

    @task(timeout_seconds=5)
    def nap():
        time.sleep(30)

    state, elapsed = timed(lambda: nap(return_state=True))
    assert state.name == "Failed" and state.message == "Task run encountered an exception RuntimeError: watchdog"
    assert elapsed < 5


def test_a_flow_limit_around_a_task_limit_both_stop_their_call(task_lines):
    # The task's limit comes first: it fails the task, the flow goes on; then the flow's.
    @task(timeout_seconds=0.3)
    def nap():
        time.sleep(30)

    @flow(timeout_seconds=1.0)
    def patient():
        nap(return_state=True)
        time.sleep(30)

    state, elapsed = timed(lambda: patient(return_state=True))
    assert state.name == "TimedOut" and state.message == "Flow run exceeded timeout of 1.0 second(s)"
    assert elapsed < 1.0 + MARGIN
    assert ("ERROR", "nap-0", "Task run exceeded timeout of 0.3 second(s)") in task_lines()

    # The flow's limit comes first: it stops the task's call too.
    @task(timeout_seconds=30)
    def long_nap():
        time.sleep(30)

    @flow(timeout_seconds=0.3)
    def impatient():
        long_nap()

    handler = signal.getsignal(signal.SIGALRM)
    state, elapsed = timed(lambda: impatient(return_state=True))
    assert state.name == "TimedOut" and state.message == "Flow run exceeded timeout of 0.3 second(s)"
    assert elapsed < 0.3 + MARGIN
    assert signal.getsignal(signal.SIGALRM) is handler


# -- timed calls inside timed calls on other threads -------------------------------------------


def test_a_task_limit_inside_a_task_on_a_worker_stops_only_the_inner_call():
    @task(timeout_seconds=0.3)
    def inner():
        time.sleep(30)

    @task(timeout_seconds=5)
    def outer():
        try:
            inner()
        except TaskRunTimeoutError:
            return "recovered"

    @flow
    def f():
        return outer.submit().result()

    value, elapsed = timed(f)
    assert value == "recovered"
    assert elapsed < 0.3 + MARGIN


@CPYTHON_313_LOSES_THE_STOP
def test_stopping_a_call_stops_the_timed_call_it_waits_for():
    inner_stopped = threading.Event()

    @task(timeout_seconds=30)
    def inner():
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pass
        finally:
            inner_stopped.set()

    @task(timeout_seconds=LIMIT)
    def outer():
        inner()

    @flow
    def f():
        return [outer.submit(return_state=True)]

    [state] = f()
    assert state.name == "TimedOut"
    assert inner_stopped.wait(5), "the inner call went on after the outer one was stopped"


# -- async tasks: cancelled at their next await --------------------------------------------------


@task(timeout_seconds=LIMIT)
async def slow_async():
    await asyncio.sleep(30)


@task(timeout_seconds=5)
async def quick_async(x):
    return x + 1  # no await: the engine would run it without a loop; here it has one


def test_a_submitted_async_run_is_cancelled_at_its_limit():
    @flow
    def f():
        future = slow_async.submit()
        _, elapsed = timed(future.wait)
        return future.state, elapsed, quick_async.submit(1).result()

    state, elapsed, quick = f()
    assert state.name == "TimedOut" and state.message == MESSAGE
    assert elapsed < LIMIT + MARGIN
    assert quick == 2


def test_an_awaited_async_task_raises_the_timeout():
    @flow
    async def f():
        with pytest.raises(TaskRunTimeoutError, match=f"^{re.escape(ERROR)}$"):
            await slow_async()
        return await quick_async(2), await slow_async(return_state=True)

    (quick, state), elapsed = timed(lambda: asyncio.run(f()))
    assert quick == 3
    assert state.name == "TimedOut"
    assert elapsed < 2 * LIMIT + MARGIN


def test_an_async_task_under_trio_is_cancelled_at_its_limit():
    anyio = pytest.importorskip("anyio")
    pytest.importorskip("trio")

    @task(timeout_seconds=LIMIT)
    async def slow_anyio():
        await anyio.sleep(30)

    async def main():
        with pytest.raises(TaskRunTimeoutError):
            await slow_anyio()

    _, elapsed = timed(lambda: anyio.run(main, backend="trio"))
    assert elapsed < LIMIT + MARGIN


# -- Ctrl-C, exit and fork, in a child interpreter --------------------------------------------

CTRL_C = """
import sys, time
from ferroflow import flow, task

@task(timeout_seconds=20)
def nap():
    time.sleep(30)

@flow
def f():
    print("started", flush=True)
    nap() if sys.argv[1] == "direct" else nap.submit().result()

try:
    f()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("call", ["direct", "submit"])
def test_ctrl_c_during_a_timed_run_ends_the_flow_at_once(call):
    import subprocess

    process = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, call], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.5)
        start = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - start
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "interrupted" in out
    assert took < 5, f"{took:.1f} s: the interrupt waited for the run's limit (20 s)"
    assert "Task run 'nap-0' - Finished in state Crashed('Execution was aborted by an interrupt signal.')" in err


def test_code_stuck_past_its_limit_does_not_hold_up_the_exit(run_script):
    script = """
        import time
        from ferroflow import flow, task

        @task(timeout_seconds=0.3)
        def stuck():
            time.sleep(60)

        @flow
        def f():
            return stuck.submit(return_state=True).name

        print(f(), flush=True)
    """
    start = time.monotonic()
    done = run_script(script, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "TimedOut"
    assert time.monotonic() - start < 15


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_times_runs_out_on_its_own_threads(run_script):
    script = """
        import os, time
        from ferroflow import flow, task

        @task(timeout_seconds=0.3)
        def maybe_stuck(block):
            if block:
                time.sleep(30)
            return "in time"

        @flow
        def f():
            return [maybe_stuck.submit(block, return_state=True) for block in (False, True)]

        f()  # the parent has helper threads now; the child has none of them
        pid = os.fork()
        if pid == 0:
            quick, stuck = f()
            os._exit(0 if (quick.result(), stuck.name) == ("in time", "TimedOut") else 1)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)
    """
    done = run_script(script, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0", done.stderr
