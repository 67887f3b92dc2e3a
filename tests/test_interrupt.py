"""Ctrl-C during a flow ends it promptly: runs that have not started end Cancelled,
the pool shuts down, and the KeyboardInterrupt reaches the caller."""

import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ferroflow import flow, task
    from ferroflow.task_runners import ThreadPoolTaskRunner

    @task
    def nap(i):
        time.sleep(0.2)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def sleepy():
        print("started", flush=True)
        return nap.map(range(200)).result()

    try:
        sleepy()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_cancels_pending_runs_and_propagates():
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "interrupted" in out
    summary = [line for line in err.splitlines() if "Mapped task 'nap': 200 runs finished" in line]
    assert len(summary) == 1, err
    assert "Cancelled" in summary[0]
    assert "Crash detected! Execution was aborted by an interrupt signal." in err
    assert "Finished in state Crashed('Execution was aborted by an interrupt signal.')" in err
    # One line per run that did not complete, capped per map: the terminal is not drowned.
    assert sum("Finished in state Cancelled(" in line for line in err.splitlines()) <= 20


def test_an_interrupt_ends_a_coroutine_run_waiting_out_its_retry_delay_cancelled(call_with_deadline):
    # Ctrl-C used to wait out every remaining retry (5 x 5 s here): the flow run's
    # interrupt now ends a run in its retry delay Cancelled, and no retry starts.
    import asyncio
    import threading

    from ferroflow import flow, task
    from ferroflow.context import FlowRunContext

    attempts = []
    failed_once = threading.Event()

    @task(retries=5, retry_delay_seconds=5)
    async def flaky():
        attempts.append(1)
        await asyncio.sleep(0)
        failed_once.set()
        raise ValueError("not yet")

    @flow
    def f():
        future = flaky.submit()
        assert failed_once.wait(10)
        time.sleep(0.1)  # inside the retry delay now
        started = time.monotonic()
        FlowRunContext.get().task_runner._interrupt()
        future.wait()
        return future.state, time.monotonic() - started

    state, took = call_with_deadline(f, 20)
    assert state.is_cancelled(), state
    assert took < 1, took
    assert len(attempts) == 1

